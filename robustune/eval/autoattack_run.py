"""AutoAttack over a whole evaluation set, resumable after an interruption.

As in ``fra31/auto-attack`` (``run_standard_evaluation``), each component runs over *all* points
still robust before the next starts, so a state file saved after each component holds the whole
progress: per point whether it is still robust and which component first fooled it. On restart
the completed components are skipped, and inside the running component the finished batches
(saved after every round of batches); the batches of a component depend only on the robust set
when it started and on (seed, component, batch index), so a resumed run gives the same per-point
result as an uninterrupted one, and the batches may be dealt to the ranks of a process group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from robustune.attacks import eval_mode
from robustune.attacks.autoattack import AutoAttack
from robustune.eval.robust import load_batch_state, save_batch_state
from robustune.eval.sharding import n_batches, run_rounds
from robustune.utils import step_generator

log = logging.getLogger(__name__)

NOT_FOOLED = -1


@dataclass
class AutoAttackOutcome:
    """Per-point results of one AutoAttack run.

    Attributes:
        clean: the point is classified correctly without attack.
        robust: clean-correct and every component failed (the worst case per point).
        fooled_by: index of the first component that fooled the point, ``-1`` if none did
            (robust or already wrong when clean).
        components: per component: name, robust accuracy after it, points attacked, seconds.
    """

    clean: torch.Tensor
    robust: torch.Tensor
    fooled_by: torch.Tensor
    components: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def _fingerprint(attack: AutoAttack, n: int, seed: int, batch_size: int) -> dict[str, Any]:
    return {"n": n, "seed": seed, "batch_size": batch_size, **attack.describe()}


def _clean_pass(model: nn.Module, dataset: Dataset, batch_size: int, device) -> list[bool]:
    from robustune.eval.sharding import map_batches

    def work(batch) -> list[bool]:
        x, y = batch
        with torch.no_grad():
            return (model(x).argmax(1).cpu() == torch.as_tensor(y)).tolist()

    return [v for part in map_batches(dataset, batch_size, work, device=device) for v in part]


def _run_component(attack: AutoAttack, k: int, dataset: Dataset, state: dict[str, Any],
                   batch_size: int, device, seed: int, path: Path | None) -> dict[str, Any]:
    """Component ``k`` over the points robust when it started, batch by batch (dealt to the ranks).

    ``state["current"]`` holds those points and the finished batches, saved after every round, so
    a killed run resumes inside the component and repeats at most one batch per rank.
    """
    t0 = time.perf_counter()
    current = state.get("current")
    if current is None or current["k"] != k:
        current = state["current"] = {"k": k, "idx": [i for i, r in enumerate(state["robust"]) if r],
                                      "done": [], "seconds": 0.0}
    idx, before = current["idx"], current["seconds"]
    todo = [b for b in range(n_batches(len(idx), batch_size)) if b not in set(current["done"])]

    def work(b: int, _points, batch) -> list[int]:
        x, y = batch
        y = torch.as_tensor(y).to(x.device)
        _, fooled = attack.run_component(k, x, y, step_generator(seed, k, b, device=device))
        return [idx[b * batch_size + j] for j in fooled.nonzero().squeeze(1).tolist()]

    def record(parts) -> None:
        for b, _, fooled in parts:
            for point in fooled:
                state["robust"][point] = False
                state["fooled_by"][point] = k
            current["done"].append(b)
        current["seconds"] = before + time.perf_counter() - t0
        save_batch_state(path, state)

    run_rounds(dataset, idx, batch_size, todo, work, record, desc=f"AutoAttack {attack.component_names[k]}",
               device=device)
    n = len(state["robust"])
    state.pop("current")
    return {"name": attack.component_names[k], "attacked": len(idx),
            "robust_accuracy": sum(state["robust"]) / max(n, 1),
            "seconds": current["seconds"]}


def autoattack_outcomes(model: nn.Module, dataset: Dataset, attack: AutoAttack, batch_size: int = 256,
                        device: torch.device | str = "cpu", seed: int = 0,
                        state_path: str | Path | None = None) -> AutoAttackOutcome:
    """Run ``attack``'s components over ``dataset`` in order; resumable through ``state_path``.

    The state (JSON, written atomically by rank 0 after the clean pass and after every round of
    batches) holds the settings fingerprint, the completed components, the per-point flags and the
    progress inside the running component. A state written with other settings, or for a model
    whose clean predictions differ, is refused rather than mixed. Under torch.distributed the
    batches are dealt to the ranks (:mod:`robustune.eval.sharding`): same per-point result.
    """
    path = Path(state_path) if state_path is not None else None
    fingerprint = _fingerprint(attack, len(dataset), seed, batch_size)
    with eval_mode(model):
        clean = _clean_pass(model, dataset, batch_size, device)
        state = load_batch_state(path, fingerprint, "AutoAttack")
        if state is not None:
            log.info("resuming AutoAttack: components done: %s", ", ".join(state["done"]) or "none")
        if state is not None and state["clean"] != clean:
            raise ValueError(f"{path} was written for another model or data (clean predictions "
                             "differ); delete it to start again")
        if state is None:
            state = {"fingerprint": fingerprint, "done": [], "components": [], "clean": clean,
                     "robust": list(clean), "fooled_by": [NOT_FOOLED] * len(clean)}
            save_batch_state(path, state)
        if attack.eps > 0:
            for k, name in enumerate(attack.component_names):
                if name in state["done"]:
                    continue
                if any(state["robust"]) or state.get("current"):
                    record = _run_component(attack, k, dataset, state, batch_size, device, seed, path)
                else:
                    record = {"name": name, "attacked": 0, "robust_accuracy": 0.0, "seconds": 0.0}
                log.info("AutoAttack %s: robust accuracy %.4f (%d points attacked, %.1f s)", name,
                         record["robust_accuracy"], record["attacked"], record["seconds"])
                state["done"].append(name)
                state["components"].append(record)
                save_batch_state(path, state)
    return AutoAttackOutcome(clean=torch.tensor(state["clean"], dtype=torch.bool),
                             robust=torch.tensor(state["robust"], dtype=torch.bool),
                             fooled_by=torch.tensor(state["fooled_by"], dtype=torch.int64),
                             components=state["components"], settings=attack.describe())
