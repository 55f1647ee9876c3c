"""torch.distributed helpers; everything degrades to a single process when not launched by torchrun."""

from __future__ import annotations

import os
from typing import Any

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
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        dist.init_process_group(backend=backend)
    else:
        # Under torchrun the workers of every restart share the agent's store: without a prefix of
        # their own, a restarted rank can read a killed peer's old address from it and fail to
        # connect ("Gloo connectFullMesh failed … Connection refused", seen here in 2 of 6 restarts).
        store, rank_, world = next(dist.rendezvous("env://"))
        dist.init_process_group(backend=backend, store=dist.PrefixStore(f"robustune/restart_{restart}", store),
                                rank=rank_, world_size=world)
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


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (a picklable object); itself in a single process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order; ``[obj]`` in a single process."""
    if not is_distributed():
        return [obj]
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, obj)
    return parts


def batch_blocks(n: int, batch_size: int) -> list[tuple[int, list[int]]]:
    """This rank's batches of ``range(n)`` as (global batch index, indices).

    The batches are exactly those one process makes (``[b·B, (b+1)·B)``), dealt round-robin to
    the ranks (ours, for the distributed evaluation): each batch holds the same images and draws
    from the same per-batch generator as in one process, so per-image outcomes are the ones a
    single process gives, to the last bit where the computation is deterministic.
    """
    n_batches = -(-n // max(batch_size, 1))
    return [(b, list(range(b * batch_size, min(n, (b + 1) * batch_size))))
            for b in range(rank(), n_batches, world_size())]


def per_rank_batch(global_batch: int, what: str = "data.batch_size", world: int | None = None) -> int:
    """``global_batch // world``, refusing a global batch the ranks cannot share equally.

    ``world`` defaults to the process group's size (give it to check before launching).

    Raises:
        ValueError: one line naming the fix (a global batch divisible by the world size, >= 1 per rank).
    """
    world = world_size() if world is None else world
    if global_batch < world or global_batch % world:
        good = max(world, global_batch // world * world)
        raise ValueError(
            f"{what}={global_batch} cannot be shared by {world} processes (each rank needs the same "
            f"batch, at least 1): set {what} to a multiple of {world}, e.g. --set {what}={good}, "
            f"or run fewer processes (--nproc)")
    return global_batch // world


def rank_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun, else ``device``."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def shutdown() -> None:
    """Leave the process group (a no-op in a single process)."""
    if is_distributed():
        dist.destroy_process_group()


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``t`` in place with rank ``src``'s values (a no-op in a single process)."""
    if is_distributed():
        dist.broadcast(t, src=src)
    return t
