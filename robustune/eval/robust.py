"""Robust accuracy under an attack, per sample, batched, sharded over ranks, resumable per batch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from robustune import distributed as dist
from robustune.attacks import Attack, eval_mode
from robustune.data.loading import LoaderOptions
from robustune.eval.sharding import n_batches, run_rounds
from robustune.files import read_json, write_json

log = logging.getLogger(__name__)


def batch_generator(seed: int, b: int, device: torch.device | str) -> torch.Generator:
    """The generator of batch ``b`` (its random start): seeded by (seed, batch index)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed * 1_000_003 + b)
    return gen


def load_batch_state(path: Path | None, fingerprint: dict[str, Any], what: str = "attack") -> dict[str, Any] | None:
    """A per-batch state file written with ``fingerprint`` (read by rank 0, given to every rank).

    Raises:
        ValueError: the file was written by another run (other settings, data or seed).
    """
    state = None
    if dist.is_main_process() and path is not None and path.exists():
        state = read_json(path)
    state = dist.broadcast_object(state)
    if state is not None and state.get("fingerprint") != json_roundtrip(fingerprint):
        raise ValueError(f"{path} was written by a different {what} run (other settings, data or "
                         "seed); delete it to start again")
    return state


def json_roundtrip(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists), for comparisons."""
    import json

    return json.loads(json.dumps(data))


def save_batch_state(path: Path | None, state: dict[str, Any]) -> None:
    if path is not None and dist.is_main_process():
        write_json(path, state)
from robustune.precision import correct_rechecked, fp32_gradients


def attack_outcomes(model: nn.Module, dataset: Dataset, attack: Attack, batch_size: int = 256,
                    device: torch.device | str = "cpu", desc: str = "attack",
                    seed: int = 0, state_path: str | Path | None = None, *, loader: LoaderOptions | None = None,
                    precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (clean correct, robust correct) booleans under ``attack``.

    A point counts as robust only if it is also classified correctly when clean. Each batch's
    random start is drawn from a generator seeded by (seed, batch index): reproducible, order-free,
    so the batches may be dealt to the ranks of a process group and resumed in any order. With
    ``state_path`` the outcomes of finished batches are saved (JSON, atomically, by rank 0) after
    every round of batches, and a rerun skips them: a kill repeats at most one batch per rank.
    Precision policy (:mod:`robustune.precision`): the attack's gradient steps run in fp32 (TF32
    allowed under a reduced policy); the clean and adversarial checks run under autocast and every
    point they leave correct is re-checked in fp32 before it counts.
    """
    path = Path(state_path) if state_path is not None else None
    settings = {k: v for k, v in vars(attack).items() if isinstance(v, (int, float, str, bool))}
    fingerprint = {"n": len(dataset), "seed": seed, "batch_size": batch_size,
                   "attack": {"type": type(attack).__name__, **settings}}
    state = load_batch_state(path, fingerprint) or {"fingerprint": fingerprint, "batches": {}}
    todo = [b for b in range(n_batches(len(dataset), batch_size)) if str(b) not in state["batches"]]

    def work(b: int, _idx, batch) -> tuple[list[bool], list[bool]]:
        x, y = batch
        y = torch.as_tensor(y).to(x.device)
        ok = correct_rechecked(model, x, y, precision)
        with fp32_gradients(precision):
            adv = attack(x, y, generator=batch_generator(seed, b, x.device))
        rob = correct_rechecked(model, adv, y, precision) & ok
        return ok.cpu().tolist(), rob.cpu().tolist()

    def record(parts) -> None:
        for b, _, (ok, rob) in parts:
            state["batches"][str(b)] = [ok, rob]
        save_batch_state(path, state)

    with eval_mode(model):
        run_rounds(dataset, range(len(dataset)), batch_size, todo, work, record, desc, device=device, loader=loader)
    order = [state["batches"][str(b)] for b in range(n_batches(len(dataset), batch_size))]
    clean = [v for ok, _ in order for v in ok]
    robust = [v for _, rob in order for v in rob]
    return torch.tensor(clean, dtype=torch.bool), torch.tensor(robust, dtype=torch.bool)


def robust_accuracy(model: nn.Module, dataset: Dataset, make_attack: Callable[[nn.Module], Attack],
                    batch_size: int = 256, device: torch.device | str = "cpu", *,
                    precision: str = "fp32") -> float:
    _, rob = attack_outcomes(model, dataset, make_attack(model), batch_size, device, precision=precision)
    return rob.float().mean().item()
