"""Evaluate a run folder: rebuild its final model, evaluate the split, write ``results.json``.

The one path from a run to its numbers, used by ``robustune eval``, the demo, ablations and the
few-shot protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from robustune.config import EvalConfig, RunConfig
from robustune.eval import EvalResults, evaluate
from robustune.runs.loading import load_run_config, load_run_model
from robustune.utils import resolve_device


class RunEvaluation(NamedTuple):
    results: EvalResults
    classes: list[str]  # the evaluated split's class names


def evaluate_run(run_dir: str | Path, ecfg: EvalConfig, out: str | Path | None = None, *,
                 cfg: RunConfig | None = None, split: str | None = None, device: str | None = None,
                 options: dict[str, Any] | None = None, check_weights_classes: bool = True,
                 dataset_info: dict[str, Any] | None = None) -> RunEvaluation:
    """Evaluate the final weights of ``run_dir`` with the suites of ``ecfg``; resumable per cell.

    Args:
        run_dir: a run folder (``config.yaml`` + ``model.safetensors``).
        ecfg: suites, radii, steps, subset and seed of the evaluation.
        out: results folder (default ``run_dir/eval``).
        cfg: the run's config (default: its ``config.yaml``); a caller may pass an edited one.
        split: split to evaluate (default ``ecfg.split``, else the run's ``data.test_split``).
        device: ``cpu`` / ``cuda`` / ``auto`` (default: the run's ``train.device``).
        options: suite options (e.g. ``corruption_root``).
        check_weights_classes: the split's classes must be the weights' (off for the few-shot
            protocol's deliberate cross-dataset evaluations).
        dataset_info: extra provenance recorded with the data set.
    """
    run_dir = Path(run_dir)
    cfg = cfg if cfg is not None else load_run_config(run_dir)
    model, dataset, classes, info = load_run_model(cfg, run_dir, split or ecfg.split,
                                                   check_weights_classes=check_weights_classes)
    results = evaluate(model, dataset, ecfg, Path(out) if out is not None else run_dir / "eval", classes=classes,
                       model_info=info["model"], dataset_info={**info["dataset"], **(dataset_info or {})},
                       device=resolve_device(device or cfg.train.device, "--device" if device else "train.device"),
                       batch_size=cfg.data.eval_batch_size, options=options or {})
    return RunEvaluation(results, classes)


__all__ = ["RunEvaluation", "evaluate_run"]
