"""Optimizer and per-step learning-rate schedule from an :class:`OptimConfig`."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from robustune.config import ConfigError, OptimConfig


def create_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise ConfigError("the method has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optim.name {cfg.name!r}; valid: sgd, adamw")


def lr_factor(step: int, total: int, warmup: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` (0-based) of ``total`` steps."""
    if step < warmup:
        if cfg.warmup_lr is not None:  # FAP/CoOp: constant small LR during warm-up
            return cfg.warmup_lr / cfg.lr
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule in ("cosine", "onecycle"):
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    raise ConfigError(f"unknown optim.schedule {cfg.schedule!r}; valid: cosine, constant, onecycle")


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int,
                     epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine (or constant) per-step schedule with linear or constant warm-up.

    ``onecycle`` is cosine with a default warm-up of 30 % of training when none is set.
    """
    total = max(1, steps_per_epoch * epochs)
    warm_epochs = cfg.warmup_epochs or (0.3 * epochs if cfg.schedule == "onecycle" else 0.0)
    warmup = int(round(warm_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, cfg))
