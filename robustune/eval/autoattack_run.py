"""AutoAttack over a whole evaluation set, resumable after an interruption.

As in ``fra31/auto-attack`` (``run_standard_evaluation``), each component runs over *all* points
still robust before the next starts, so a state file saved after each component holds the whole
progress: per point whether it is still robust and which component first fooled it. On restart
the completed components are skipped; the batches of a component depend only on the robust set
and on (seed, component, batch index), so a resumed run gives the same per-point result as an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from robustune.attacks import eval_mode
from robustune.attacks.autoattack import AutoAttack
from robustune.data import build_loader
from robustune.files import read_json, write_json
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


def _load_state(path: Path | None, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    state = read_json(path)
    if state.get("fingerprint") != write_roundtrip(fingerprint):
        raise ValueError(f"{path} was written by a different AutoAttack run (other settings, data or "
                         "seed); delete it to start again")
    log.info("resuming AutoAttack: components done: %s", ", ".join(state["done"]) or "none")
    return state


def write_roundtrip(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(data))


def _clean_pass(model: nn.Module, dataset: Dataset, batch_size: int, device) -> list[bool]:
    correct = []
    for x, y in build_loader(dataset, batch_size):
        x, y = x.to(device), torch.as_tensor(y).to(device)
        with torch.no_grad():
            correct += (model(x).argmax(1) == y).tolist()
    return correct


def _run_component(attack: AutoAttack, k: int, dataset: Dataset, state: dict[str, Any],
                   batch_size: int, device, seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    idx = [i for i, r in enumerate(state["robust"]) if r]
    loader = build_loader(Subset(dataset, idx), batch_size)
    for b, (x, y) in enumerate(tqdm(loader, desc=f"AutoAttack {attack.component_names[k]}", leave=False)):
        x, y = x.to(device), torch.as_tensor(y).to(device)
        _, fooled = attack.run_component(k, x, y, step_generator(seed, k, b, device=device))
        for j in fooled.nonzero().squeeze(1).tolist():
            point = idx[b * batch_size + j]
            state["robust"][point] = False
            state["fooled_by"][point] = k
    n = len(state["robust"])
    return {"name": attack.component_names[k], "attacked": len(idx),
            "robust_accuracy": sum(state["robust"]) / max(n, 1),
            "seconds": time.perf_counter() - t0}


def autoattack_outcomes(model: nn.Module, dataset: Dataset, attack: AutoAttack, batch_size: int = 256,
                        device: torch.device | str = "cpu", seed: int = 0,
                        state_path: str | Path | None = None) -> AutoAttackOutcome:
    """Run ``attack``'s components over ``dataset`` in order; resumable through ``state_path``.

    The state (JSON, written atomically after the clean pass and after each component) holds the
    settings fingerprint, the completed components and the per-point flags. A state written with
    other settings, or for a model whose clean predictions differ, is refused rather than mixed.
    """
    path = Path(state_path) if state_path is not None else None
    fingerprint = _fingerprint(attack, len(dataset), seed, batch_size)
    with eval_mode(model):
        clean = _clean_pass(model, dataset, batch_size, device)
        state = _load_state(path, fingerprint)
        if state is not None and state["clean"] != clean:
            raise ValueError(f"{path} was written for another model or data (clean predictions "
                             "differ); delete it to start again")
        if state is None:
            state = {"fingerprint": fingerprint, "done": [], "components": [], "clean": clean,
                     "robust": list(clean), "fooled_by": [NOT_FOOLED] * len(clean)}
            if path is not None:
                write_json(path, state)
        if attack.eps > 0:
            for k, name in enumerate(attack.component_names):
                if name in state["done"]:
                    continue
                if any(state["robust"]):
                    record = _run_component(attack, k, dataset, state, batch_size, device, seed)
                else:
                    record = {"name": name, "attacked": 0, "robust_accuracy": 0.0, "seconds": 0.0}
                log.info("AutoAttack %s: robust accuracy %.4f (%d points attacked, %.1f s)", name,
                         record["robust_accuracy"], record["attacked"], record["seconds"])
                state["done"].append(name)
                state["components"].append(record)
                if path is not None:
                    write_json(path, state)
    return AutoAttackOutcome(clean=torch.tensor(state["clean"], dtype=torch.bool),
                             robust=torch.tensor(state["robust"], dtype=torch.bool),
                             fooled_by=torch.tensor(state["fooled_by"], dtype=torch.int64),
                             components=state["components"], settings=attack.describe())
