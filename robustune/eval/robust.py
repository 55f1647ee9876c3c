"""Robust accuracy under an attack, per sample, batched."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from robustune.attacks import Attack, eval_mode
from robustune.data.loading import LoaderOptions, device_batches
from robustune.precision import correct_rechecked, fp32_gradients


def attack_outcomes(model: nn.Module, dataset: Dataset, attack: Attack, batch_size: int = 256,
                    device: torch.device | str = "cpu", desc: str = "attack",
                    seed: int = 0, *, loader: LoaderOptions | None = None,
                    precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (clean correct, robust correct) booleans under ``attack``.

    A point counts as robust only if it is also classified correctly when clean. Each batch's
    random start is drawn from a generator seeded by (seed, batch index): reproducible, order-free.
    Precision policy (:mod:`robustune.precision`): the attack's gradient steps run in fp32 (TF32
    allowed under a reduced policy); the clean and adversarial checks run under autocast and every
    point they leave correct is re-checked in fp32 before it counts.
    """
    clean, robust = [], []
    with eval_mode(model):
        batches = device_batches(dataset, batch_size, device, loader)
        for b, (x, y) in enumerate(tqdm(batches, desc=desc, leave=False)):
            y = torch.as_tensor(y).to(x.device)
            ok = correct_rechecked(model, x, y, precision)
            gen = torch.Generator(device=x.device)
            gen.manual_seed(seed * 1_000_003 + b)
            with fp32_gradients(precision):
                adv = attack(x, y, generator=gen)
            rob = correct_rechecked(model, adv, y, precision) & ok
            clean.append(ok.cpu())
            robust.append(rob.cpu())
    return torch.cat(clean), torch.cat(robust)


def robust_accuracy(model: nn.Module, dataset: Dataset, make_attack: Callable[[nn.Module], Attack],
                    batch_size: int = 256, device: torch.device | str = "cpu", *,
                    precision: str = "fp32") -> float:
    _, rob = attack_outcomes(model, dataset, make_attack(model), batch_size, device, precision=precision)
    return rob.float().mean().item()
