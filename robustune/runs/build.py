"""Build the model, data and method of a run from its :class:`RunConfig`.

The model comes from :func:`robustune.models.create_model` (a project or timm classifier, or a
``det:<backbone>`` detector); a ``clip:<architecture>`` model is a zero-shot classifier over the
class names and templates of the run's data (:func:`robustune.clip.build.build_clip_model`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from robustune.config import RunConfig
from robustune.data import DataSplits, load_splits
from robustune.data.registry import create_dataset
from robustune.data.splits import classes_of, dataset_options
from robustune.clip.build import build_clip_model
from robustune.clip.models import is_clip_name
from robustune.errors import CorruptFileError, WeightsUnavailableError
from robustune.files import file_sha256
from robustune.methods import Method, create_method
from robustune.models import Classifier, create_model, load_state_dict_file, read_state_dict
from robustune.models.create import DETECTOR_PREFIX

log = logging.getLogger(__name__)


def resolve_weights_file(ref: str | Path) -> Path:
    """A run folder, a checkpoint folder or a weights file → the ``model.safetensors`` to load."""
    path = Path(ref)
    for candidate in (path, path / "model.safetensors", path / "final" / "model.safetensors"):
        if candidate.is_file():
            verify_run_weights(candidate)
            return candidate
    raise WeightsUnavailableError(
        f"no weights at {str(path)!r}: expected a model.safetensors file or a run folder holding one "
        "(train it first, e.g. `robustune train configs/erm_digits.yaml`)"
    )


def verify_run_weights(weights: Path) -> None:
    """A run's final ``model.safetensors`` must match the sha256 its ``run.json`` recorded."""
    record = weights.parent / "run.json"
    if weights.name != "model.safetensors" or not record.is_file():
        return
    try:
        digest = json.loads(record.read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        log.warning("%s is unreadable: %s not verified against its digest", record, weights)
        return
    if digest and file_sha256(weights) != digest:
        raise CorruptFileError(
            f"{weights} does not match the sha256 recorded in {record.name} (corrupted or modified "
            "after training). Restore it, or delete it and run `robustune train CONFIG --out "
            f"{weights.parent} --resume` to re-export it from the last checkpoint"
        )


def count_classes(cfg: RunConfig) -> int:
    """Number of classes of the run's dataset (reads labels, not images, where possible)."""
    ds = create_dataset(cfg.data.name, cfg.data.train_split, **dataset_options(cfg.data))
    return len(classes_of(ds))


def build_model(cfg: RunConfig, num_classes: int) -> Classifier:
    """The run's model, with ``model.init_from`` loaded (a classifier's backbone, or a detector)."""
    if is_clip_name(cfg.model.name):  # class names and templates come from the data
        return build_clip_model(cfg)
    if cfg.model.name.startswith(DETECTOR_PREFIX):
        return build_detector(cfg, num_classes)
    model = create_model(cfg.model.name, num_classes, weights=cfg.model.weights, **cfg.model.kwargs)
    if cfg.model.init_from:
        path = resolve_weights_file(cfg.model.init_from)
        load_state_dict_file(model.backbone, path)
        log.info("starting from %s", path)
    return model


def build_detector(cfg: RunConfig, num_classes: int):
    """``model.name: det:<backbone>``; ``model.kwargs`` go to :func:`create_detector` (``arch``, sizes).

    ``model.init_from``: a classifier run (its backbone initialises the detector's trunk) or a
    detection run (the whole detector continues from it).
    """
    kwargs = dict(cfg.model.kwargs)
    source = resolve_weights_file(cfg.model.init_from) if cfg.model.init_from else None
    whole = source is not None and any(k.startswith("detector.") for k in read_state_dict(source))
    model = create_model(cfg.model.name, num_classes, weights=cfg.model.weights,
                         backbone_file=None if whole or source is None else str(source), **kwargs)
    if whole:
        load_state_dict_file(model, source)
    if source is not None:
        log.info("starting from %s (%s)", source, "whole detector" if whole else "classifier backbone")
    return model


def check_labels(splits: DataSplits, num_classes: int) -> None:
    """Fail early, naming the split and the label, when a label is outside [0, num_classes)."""
    from robustune.data.splits import targets_of

    for name in ("train", "val", "test"):
        ds = getattr(splits, name)
        if ds is None or getattr(ds, "is_detection", False):  # detection sets check labels when built
            continue
        targets = targets_of(ds)
        bad = [t for t in targets if not 0 <= int(t) < num_classes]
        if bad:
            raise ValueError(
                f"the {name} split has {len(bad)} label(s) outside [0, {num_classes}), e.g. {bad[0]}: "
                f"the model has {num_classes} classes (from the training split's class list); "
                "fix the labels or the class list of the dataset"
            )


def build_run(cfg: RunConfig) -> tuple[Method, DataSplits]:
    """Model (sized for the data), data splits (sized for the model) and the method."""
    num_classes = count_classes(cfg)
    model = build_model(cfg, num_classes)
    splits = load_splits(cfg.data, model)
    check_labels(splits, num_classes)
    method = create_method(cfg.method.name, model, cfg.method.params, num_classes=num_classes)
    return method, splits
