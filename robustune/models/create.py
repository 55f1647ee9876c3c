"""``create_model(name, num_classes, ...)``: the one entry point to the model zoo by name.

``det:<backbone>`` builds a detector (:func:`robustune.models.detectors.create_detector`); any other
name a classifier (:func:`robustune.models.factory.create_classifier`: a project model or any timm
model). CLIP models (``clip:<architecture>``) are built from the class names and templates of a
run's data, by :func:`robustune.runs.build.build_model` over :mod:`robustune.clip` (a layer above).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from robustune.models.detectors import create_detector
from robustune.models.factory import create_classifier

DETECTOR_PREFIX = "det:"


def create_model(name: str, num_classes: int, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """A classifier or a detector (``det:<backbone>``), weights as ``create_classifier`` takes them.

    Args:
        name: a registered project model, a timm model, or ``det:<backbone>``.
        num_classes: size of the classification head (foreground classes for a detector).
        weights: ``None`` for random init, a timm tag / ``"hub"`` to download, or a local file.
        **kwargs: passed to the builder (a detector's ``arch``, anchor sizes, ``backbone_file``, ...).
    """
    if name.startswith(DETECTOR_PREFIX):
        return create_detector(name[len(DETECTOR_PREFIX):], num_classes, weights=weights, **kwargs)
    return create_classifier(name, num_classes, weights=weights, **kwargs)


__all__ = ["DETECTOR_PREFIX", "create_model"]
