"""Rebuild a trained model and its evaluation split from a run folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from robustune.clip.models import is_clip_name
from robustune.config import RunConfig, load_config
from robustune.data.registry import create_dataset
from robustune.data.splits import check_same_classes, classes_of, dataset_options, model_input_options
from robustune.files import read_json
from robustune.runs.build import build_run, resolve_weights_file


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved ``config.yaml`` of a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml); train one with `robustune train`")
    return load_config(path)


def load_run_model(cfg: RunConfig, run_dir: Path, split: str | None = None, *,
                   check_weights_classes: bool = True) -> tuple[Any, Any, list[str], dict]:
    """(model with the run's final weights, the ``split`` dataset, class names, provenance info).

    ``split`` defaults to the run's ``data.test_split``. The split's class list must be its training
    split's and, with ``check_weights_classes``, the one the weights were trained on (``run.json``);
    the few-shot protocol turns that off for its deliberate cross-dataset evaluations.
    """
    split = split or cfg.data.test_split
    if not split:
        raise ValueError(f"{run_dir}: the run has no data.test_split; pass --split NAME")
    # The final weights replace the starting point: do not require the init_from run to exist.
    # Only the training split (class list, head size) and the evaluated split are loaded.
    build_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=None),
                                    data=dataclasses.replace(cfg.data, val_split=None, test_split=None))
    method, splits = build_run(build_cfg)
    weights = resolve_weights_file(run_dir)
    method.load_export(weights)
    model = method.eval_model()
    dataset = create_dataset(cfg.data.name, split, **dataset_options(cfg.data), **model_input_options(model))
    classes = classes_of(dataset)
    check_same_classes(splits.classes, classes, f"the training split {cfg.data.train_split!r}",
                       f"the evaluated split {split!r}")
    recorded = _recorded_classes(Path(run_dir))
    if check_weights_classes and recorded is not None and not is_clip_name(cfg.model.name):  # a CLIP head is built from names
        check_same_classes(recorded, classes, f"the weights ({Path(run_dir) / 'run.json'})",
                           f"the evaluated split {split!r}")
    info = {
        "model": {"name": cfg.model.name, "weights": str(weights), "method": cfg.method.name,
                  "run_dir": str(run_dir), "run_name": cfg.name},
        "dataset": {"name": cfg.data.name, "split": split, "root": cfg.data.root,
                    "preprocessing": f"resize/crop to {getattr(model, 'input_size', '?')}, [0,1], "
                                     "normalised inside the model"},
    }
    return model, dataset, classes, info


def _recorded_classes(run_dir: Path) -> list[str] | None:
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    classes = read_json(path).get("classes")
    return [str(c) for c in classes] if classes else None
