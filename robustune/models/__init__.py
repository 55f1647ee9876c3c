"""Model registry and factory: every model takes images in [0,1] and normalises inside."""

from robustune.models.factory import (
    MODELS,
    WeightsUnavailableError,
    create_classifier,
    list_models,
    load_state_dict_file,
    register_model,
)
from robustune.models.wrapper import Classifier, ImageNormalizer

__all__ = [
    "MODELS",
    "Classifier",
    "ImageNormalizer",
    "WeightsUnavailableError",
    "create_classifier",
    "list_models",
    "load_state_dict_file",
    "register_model",
]
