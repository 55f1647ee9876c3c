"""Robust accuracy under an attack, per sample, batched."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from robustune.attacks import Attack, eval_mode
from robustune.data import build_loader


def attack_outcomes(model: nn.Module, dataset: Dataset, attack: Attack, batch_size: int = 256,
                    device: torch.device | str = "cpu", desc: str = "attack",
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (clean correct, robust correct) booleans under ``attack``.

    A point counts as robust only if it is also classified correctly when clean. Each batch's
    random start is drawn from a generator seeded by (seed, batch index): reproducible, order-free.
    """
    clean, robust = [], []
    with eval_mode(model):
        for b, (x, y) in enumerate(tqdm(build_loader(dataset, batch_size), desc=desc, leave=False)):
            x, y = x.to(device), torch.as_tensor(y).to(device)
            with torch.no_grad():
                ok = model(x).argmax(1) == y
            gen = torch.Generator(device=x.device)
            gen.manual_seed(seed * 1_000_003 + b)
            adv = attack(x, y, generator=gen)
            with torch.no_grad():
                rob = (model(adv).argmax(1) == y) & ok
            clean.append(ok.cpu())
            robust.append(rob.cpu())
    return torch.cat(clean), torch.cat(robust)


def robust_accuracy(model: nn.Module, dataset: Dataset, make_attack: Callable[[nn.Module], Attack],
                    batch_size: int = 256, device: torch.device | str = "cpu") -> float:
    _, rob = attack_outcomes(model, dataset, make_attack(model), batch_size, device)
    return rob.float().mean().item()
