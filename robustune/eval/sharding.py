"""Evaluation batches dealt to the ranks of a process group, results gathered in dataset order.

Every evaluation loop here cuts its points into the batches one process makes
(``[b·B, (b+1)·B)``) and deals the batches still to do round-robin to the ranks (ours). A batch
therefore holds the same images, and draws from the same ``(seed, batch index)`` generator, on any
number of ranks: the per-image outcomes are a single process's, to the last bit where the
computation is deterministic. After each *round* (every rank one batch) the ranks exchange their
results, so a state file written by rank 0 after a round loses at most one batch per rank on a
kill, and a resumed run deals the remaining batches afresh (any world size).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

import torch

from robustune import distributed as dist
from robustune.data.loading import LoaderOptions, device_batches


def batch_points(n: int, batch_size: int, b: int) -> list[int]:
    """Positions (into the evaluated points) of batch ``b``."""
    return list(range(b * batch_size, min(n, (b + 1) * batch_size)))


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // max(batch_size, 1))


def batches_of(dataset: Dataset, points: Sequence[int], batch_size: int, batch_ids: Sequence[int],
               device: torch.device | str = "cpu",
               loader: LoaderOptions | None = None) -> Iterator[tuple[int, list[int], Any]]:
    """(batch index, dataset indices, batch on ``device``) for ``batch_ids`` (ascending) of ``points``.

    One loader (:func:`robustune.data.loading.device_batches`: workers, uint8 transport converted on
    the device) serves them all: every batch but the last of ``points`` is full, so the loader's
    batches over the concatenated indices are exactly the requested ones.
    """
    ids = list(batch_ids)
    if not ids:
        return
    chosen = [[points[i] for i in batch_points(len(points), batch_size, b)] for b in ids]
    flat = [i for idx in chosen for i in idx]
    whole = flat == list(range(len(dataset)))
    batches = device_batches(dataset if whole else Subset(dataset, flat), batch_size, device, loader)
    yield from ((b, idx, batch) for b, idx, batch in zip(ids, chosen, batches))


def run_rounds(dataset: Dataset, points: Sequence[int], batch_size: int, todo: Sequence[int],
               work: Callable[[int, list[int], Any], Any],
               on_round: Callable[[list[tuple[int, list[int], Any]]], None], desc: str = "", *,
               device: torch.device | str = "cpu", loader: LoaderOptions | None = None) -> None:
    """Run ``work(b, indices, batch)`` on this rank's share of the batches ``todo`` (batches on ``device``).

    After each round every rank calls ``on_round`` with every rank's ``(b, indices, result)`` of
    that round (batch order), so all ranks hold the same state and rank 0 may checkpoint it.
    """
    todo = sorted(todo)
    mine = todo[dist.rank()::dist.world_size()]
    rounds = -(-len(todo) // dist.world_size())
    it = batches_of(dataset, points, batch_size, mine, device, loader)
    bar = tqdm(total=rounds, desc=desc, leave=False, disable=not dist.is_main_process() or not desc)
    for _ in range(rounds):
        item = next(it, None)
        done = None if item is None else (item[0], item[1], work(*item))
        parts = [p for p in dist.all_gather_objects(done) if p is not None]
        on_round(sorted(parts, key=lambda p: p[0]))
        bar.update(1)
    bar.close()


def map_batches(dataset: Dataset, batch_size: int, work: Callable[[Any], Any], desc: str = "", *,
                device: torch.device | str = "cpu", loader: LoaderOptions | None = None) -> list[Any]:
    """``work(batch)`` of every batch of ``dataset`` (sharded over the ranks), in batch order, on every rank."""
    out: dict[int, Any] = {}

    def collect(parts):
        out.update({b: r for b, _, r in parts})

    run_rounds(dataset, range(len(dataset)), batch_size, range(n_batches(len(dataset), batch_size)),
               lambda b, idx, batch: work(batch), collect, desc, device=device, loader=loader)
    return [out[b] for b in sorted(out)]
