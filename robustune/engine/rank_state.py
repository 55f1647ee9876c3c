"""Per-rank method state (ER-APT's population memory) checkpointed beside each checkpoint.

Under DDP each rank keeps its own state (:meth:`Method.rank_state`); every rank writes
``<run>/rank_state/<checkpoint name>/rank<r>_of_<world>.safetensors`` (atomically) *before* rank 0
writes the checkpoint (an epoch's ``epoch_NNNN`` or a step checkpoint's ``epoch_NNNN_step_SSSSSSSS``),
so a checkpoint that exists always has its rank files. A resume reads
each rank's own file back; a resume with another world size is refused (the memory of rank r
is keyed by the images rank r drew, which depend on the world size).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from robustune import distributed as dist
from robustune.files import save_tensors

log = logging.getLogger(__name__)
FOLDER = "rank_state"


def rank_file(run_dir: Path, checkpoint: str, rank: int, world: int) -> Path:
    return Path(run_dir) / FOLDER / checkpoint / f"rank{rank}_of_{world}.safetensors"


def save_rank_state(run_dir: Path, checkpoint: str, method) -> None:
    """Every rank writes its own state for the checkpoint named ``checkpoint`` (nothing when the
    method has none)."""
    if method.has_rank_state:
        save_tensors(rank_file(run_dir, checkpoint, dist.rank(), dist.world_size()), method.rank_state())


def load_rank_state(run_dir: Path, checkpoint: str, method) -> None:
    """Load this rank's state of the checkpoint named ``checkpoint``.

    Raises:
        ValueError: the checkpoint was written by another number of processes (one line naming it).
    """
    if not method.has_rank_state:
        return
    world, rank = dist.world_size(), dist.rank()
    path = rank_file(run_dir, checkpoint, rank, world)
    if path.is_file():
        from safetensors.torch import load_file

        method.load_rank_state(load_file(str(path)))
        return
    worlds = sorted({int(m.group(1)) for p in path.parent.glob("rank*_of_*.safetensors")
                     if (m := re.search(r"_of_(\d+)\.safetensors$", p.name))})
    if worlds:
        raise ValueError(
            f"{run_dir}: checkpoint {checkpoint} holds per-rank state (ER-APT's population "
            f"memory) of {worlds[0]} process(es), this resume has {world}: resume with "
            f"--nproc {worlds[0]} (the same world size), or start a new run")
    if world > 1:
        raise ValueError(
            f"{run_dir}: checkpoint {checkpoint} has no per-rank state (written by one process "
            f"or an older robustune): resume it with one process (no --nproc), or start a new run")
    log.info("no per-rank state beside checkpoint %s: using what the checkpoint holds", checkpoint)


def prune_rank_state(run_dir: Path, keep: set[str]) -> None:
    """Remove the rank files of checkpoints that were pruned (rank 0); ``keep``: the names left."""
    root = Path(run_dir) / FOLDER
    if not dist.is_main_process() or not root.is_dir():
        return
    for folder in root.glob("epoch_*"):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
