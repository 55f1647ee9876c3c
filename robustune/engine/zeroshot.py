"""Run folders for methods with nothing to train (zero-shot CLIP).

This lives in the engine, not in ``robustune.clip``, because it writes a run folder the way the
engine does (run record, export); library layers below the engine never import it.
"""

from __future__ import annotations

from pathlib import Path

from robustune.config import ConfigError, RunConfig
from robustune.engine.build import build_model
from robustune.files import save_tensors
from robustune.engine.trainer import write_run_record


def write_zeroshot_run(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Make ``run_dir`` a run folder of the untrained ``cfg`` (config, run record, empty export),
    so ``robustune eval run_dir`` evaluates zero-shot CLIP like any trained run."""
    if cfg.method.name != "zeroshot":
        raise ConfigError(f"method.name is {cfg.method.name!r}; a zero-shot run needs method.name: zeroshot")
    build_model(cfg, 0)  # fail early on a bad model, weights or template
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_record(run_dir, cfg)
    save_tensors(run_dir / "model.safetensors", {}, metadata={"method": "zeroshot"})
    return run_dir


__all__ = ["write_zeroshot_run"]
