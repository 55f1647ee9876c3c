"""torch.distributed helpers; everything degrades to a single process when not launched by torchrun."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return True


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard_indices(n: int) -> list[int]:
    """This rank's share of ``range(n)``: every index on exactly one rank, no padding."""
    return list(range(rank(), n, world_size()))


def gather_by_index(n: int, indices: list[int], *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Reassemble per-rank results (rows for ``indices``) into full tensors of length ``n``.

    Each image's result is taken exactly once (shards do not overlap and are not padded, unlike
    DistributedSampler's evaluation padding).
    """
    if not is_distributed():
        return tensors
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, (indices, [t.cpu() for t in tensors]))
    out = [torch.empty((n, *t.shape[1:]), dtype=t.dtype) for t in tensors]
    seen = torch.zeros(n, dtype=torch.long)
    for idx, ts in parts:
        index = torch.as_tensor(idx, dtype=torch.long)
        seen[index] += 1
        for o, t in zip(out, ts):
            o[index] = t
    if not bool((seen == 1).all()):
        raise RuntimeError("distributed evaluation lost or duplicated images")
    return tuple(out)
