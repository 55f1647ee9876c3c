"""Run folders for methods with nothing to train (zero-shot CLIP, a few-shot cell's untrained
method): the run record and the export as built, so such a run is evaluated like a trained one."""

from __future__ import annotations

from pathlib import Path

from robustune.config import ConfigError, RunConfig
from robustune.files import save_tensors
from robustune.methods import Method
from robustune.runs.build import build_model
from robustune.runs.record import write_run_record


def write_zeroshot_run(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Make ``run_dir`` a run folder of the untrained ``cfg`` (config, run record, empty export),
    so ``robustune eval run_dir`` evaluates zero-shot CLIP like any trained run."""
    if cfg.method.name != "zeroshot":
        raise ConfigError(f"method.name is {cfg.method.name!r}; a zero-shot run needs method.name: zeroshot")
    build_model(cfg, 0)  # fail early on a bad model, weights or template
    return write_untrained_run(cfg, run_dir, {}, metadata={"method": "zeroshot"})


def write_untrained_run(cfg: RunConfig, run_dir: str | Path, export: dict, metadata: dict | None = None) -> Path:
    """``run_dir`` as the run folder of ``cfg`` with nothing trained: run record and ``export``
    (a method's :meth:`~robustune.methods.Method.export_state`) as ``model.safetensors``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_record(run_dir, cfg)
    save_tensors(run_dir / "model.safetensors", export, metadata=metadata)
    return run_dir


def has_nothing_to_train(method: Method) -> bool:
    """True when the method has no trainable parameter (zero-shot CLIP)."""
    return next(iter(method.trainable_parameters()), None) is None


__all__ = ["has_nothing_to_train", "write_untrained_run", "write_zeroshot_run"]
