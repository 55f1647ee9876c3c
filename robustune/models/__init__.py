"""Model registry and factory: every model takes images in [0,1] and normalises inside."""

from robustune.errors import WeightsUnavailableError
from robustune.models.create import create_model
from robustune.models.factory import create_classifier
from robustune.models.registry import MODELS, list_models, register_model
from robustune.models.weights import load_state_dict_file, read_state_dict
from robustune.models.wrapper import Classifier, ImageNormalizer

__all__ = [
    "MODELS",
    "Classifier",
    "ImageNormalizer",
    "WeightsUnavailableError",
    "create_classifier",
    "create_model",
    "list_models",
    "load_state_dict_file",
    "read_state_dict",
    "register_model",
]
