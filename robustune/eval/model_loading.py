"""Rebuild a trained model and its evaluation split from a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustune.config import RunConfig
from robustune.data.splits import classes_of, model_input_options
from robustune.data.registry import create_dataset


def load_run_model(cfg: RunConfig, run_dir: Path, split: str = "test") -> tuple[Any, Any, list[str], dict]:
    """(model with the run's final weights, the ``split`` dataset, class names, provenance info)."""
    from robustune.engine.build import build_run, resolve_weights_file

    import dataclasses

    # The final weights replace the starting point: do not require the init_from run to exist.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=None))
    method, splits = build_run(cfg)
    weights = resolve_weights_file(run_dir)
    method.load_export(weights)
    model = method.eval_model()
    dataset = create_dataset(cfg.data.name, split, root=cfg.data.root, download=cfg.data.download,
                             **model_input_options(model), **cfg.data.options)
    info = {
        "model": {"name": cfg.model.name, "weights": str(weights), "method": cfg.method.name,
                  "run_dir": str(run_dir), "run_name": cfg.name},
        "dataset": {"name": cfg.data.name, "split": split, "root": cfg.data.root,
                    "preprocessing": f"resize/crop to {getattr(model, 'input_size', '?')}, [0,1], "
                                     "normalised inside the model"},
    }
    return model, dataset, classes_of(dataset), info
