"""The run record: ``config.yaml`` (resolved) and ``run.json`` (versions, hardware, seed, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustune import distributed as dist
from robustune.config import RunConfig, dump_config
from robustune.files import write_json, write_text_atomic
from robustune.utils import environment_record


def write_run_record(run_dir: Path, cfg: RunConfig, phases: dict[str, float] | None = None,
                     **extra: Any) -> None:
    """``config.yaml`` and ``run.json`` (versions, hardware, seed, world size, per-rank batch, ...)."""
    world = dist.world_size()
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    write_json(run_dir / "run.json", {
        **environment_record(), "seed": cfg.train.seed, "world_size": world,
        "global_batch": cfg.data.batch_size, "per_rank_batch": cfg.data.batch_size // world,
        "phases_seconds": phases or {}, **extra})
