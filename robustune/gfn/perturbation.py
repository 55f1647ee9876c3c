"""Neighbour-targeted perturbation (GFN Eq. 5).

x' = clip_[0,1]( x − η · sign(∇_x CE(f(x), p)) ): Eq. 5, p drawn at random from the top-k (Sec. 3.4); the
uniform per-sample draw and the [0,1] clip are *ours*;
option (*ours*, a control of issue 20): p drawn ∝ α^{rank_c(p)} over N_k(c).

It is the project's targeted PGD (one step by default, no random start) with the target drawn
from the true class's k nearest classes. The paper gives η = 0.01 without units; *ours*: model-input
(normalised) units by default; in pixel space the same step is η·std per channel (sign(∇) is the
same in both spaces).
"""

from __future__ import annotations

import torch
from torch import nn

from robustune.attacks import PGD


def pixel_step(model: nn.Module, eta: float, eta_space: str = "normalized") -> torch.Tensor | float:
    """The step in [0,1] pixel units: η·std per channel (``normalized``) or η (``pixel``)."""
    if eta_space == "pixel":
        return float(eta)
    if eta_space != "normalized":
        raise ValueError(f"unknown eta_space {eta_space!r}; valid: normalized, pixel")
    std = getattr(model, "std", None)
    if std is None:
        raise ValueError("eta_space=normalized needs a model with a normaliser (its std); use pixel")
    return eta * std.detach().reshape(1, -1, 1, 1)


def sample_neighbor_targets(labels: torch.Tensor, table: torch.Tensor,
                            generator: torch.Generator | None = None,
                            probs: torch.Tensor | None = None) -> torch.Tensor:
    """p ~ Uniform(N_k(c)) for each label c (Eq. 5), or p ~ ``probs`` over the ranks 1..k when given;
    ``table`` is the (C, k) neighbour table, column r−1 the class of rank r."""
    k = table.shape[1]
    if probs is None:
        pick = torch.randint(0, k, (labels.shape[0],), generator=generator, device=labels.device)
    else:
        rows = probs.to(labels.device, torch.float32).reshape(1, k).expand(labels.shape[0], k)
        pick = torch.multinomial(rows, 1, replacement=True, generator=generator).squeeze(1)
    return table.to(labels.device)[labels, pick]


def rank_target_probs(alpha: float, k: int) -> torch.Tensor:
    """(k,) probabilities ∝ α^r for the ranks r = 1..k (targets drawn as ``rank_weighted`` weighs them)."""
    w = alpha ** torch.arange(1, k + 1, dtype=torch.float64)
    return (w / w.sum()).float()


class NeighborPerturbation:
    """Targeted sign step(s) toward a sampled neighbour class.

    Args:
        model: [0,1]-input classifier.
        eta: step size (normalised units by default, see :func:`pixel_step`).
        steps: number of steps; with more than one, a targeted PGD projected to ε = steps·η
            (or ``eps`` when given, in the same units as η).
        eta_space: ``normalized`` (*ours*: model-input units; the paper gives none) or ``pixel``.
        use_eval_mode: eval mode (no dropout / drop-path) while taking the input gradient.
    """

    def __init__(self, model: nn.Module, eta: float = 0.01, steps: int = 1, eps: float | None = None,
                 eta_space: str = "normalized", use_eval_mode: bool = True) -> None:
        step = pixel_step(model, eta, eta_space)
        radius = pixel_step(model, eps, eta_space) if eps is not None else step * steps
        self.attack = PGD(model, eps=radius, steps=steps, alpha=step, random_start=False,
                          targeted=True, loss="ce", use_eval_mode=use_eval_mode)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, table: torch.Tensor,
                 generator: torch.Generator | None = None,
                 probs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(perturbed images, sampled targets); ``probs`` as in :func:`sample_neighbor_targets`."""
        targets = sample_neighbor_targets(labels, table, generator, probs)
        return self.attack(images, targets, generator=generator), targets
