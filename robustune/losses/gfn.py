"""GFN's inter-class distance weighted loss (Sec. 3.3, Eqs. 7–8) in its explicit readings.

w_p = α^{rank_c(p)} with 0 < α < 1: the nearest neighbours weigh most. Read literally, Eq. 8 with a
one-hot label collapses to cross-entropy, so the readings below are selectable (spec §3):

- ``ce``: CE(f(x'), c), the paper's "Nbr." row.
- ``rank_weighted``: α^{rank_c(p)} · CE(f(x'), c) for the sampled target p, normalised so the
  weights average to 1 over N_k(c) (the effective learning rate is unchanged). α → 1 gives CE.
- ``neighbor_suppression``: CE + λ · Σ_{j∈N_k(c)} α^{rank_c(j)} · (−log(1 − softmax_j(f(x')))),
  pushing probability off the near classes. λ = 0 gives CE.
- ``neighbor_margin``: CE on logits with log(1 + β·α^{rank_c(j)}) added for j ∈ N_k(c) — a
  similarity-weighted softmax denominator (never a weight < 1). β = 0 gives CE.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from robustune.registry import Registry

GFN_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("GFN loss")


def neighbor_weights(ranks: torch.Tensor, labels: torch.Tensor, alpha: float, k: int) -> torch.Tensor:
    """(N, C) weights α^{rank_c(j)} for j ∈ N_k(c) of each sample's class c, 0 elsewhere."""
    r = ranks.to(labels.device)[labels]
    inside = (r >= 1) & (r <= k)
    return torch.where(inside, torch.as_tensor(alpha, dtype=torch.float32) ** r.float(),
                       torch.zeros((), dtype=torch.float32))


@GFN_LOSSES.register("ce")
def ce(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0):
    return F.cross_entropy(logits, labels)


@GFN_LOSSES.register("rank_weighted")
def rank_weighted(logits, labels, targets, ranks, alpha=0.5, k=20, lam=1.0, beta=1.0):
    r = ranks.to(labels.device)[labels, targets].float()
    norm = (alpha ** torch.arange(1, k + 1, dtype=torch.float32)).mean()
    w = alpha ** r / norm
    return (w * F.cross_entropy(logits, labels, reduction="none")).mean()


@GFN_LOSSES.register("neighbor_suppression")
def neighbor_suppression(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0):
    w = neighbor_weights(ranks, labels, alpha, k)
    p = logits.float().softmax(dim=1)
    penalty = -(torch.log1p(-p.clamp(max=1 - 1e-6))) * w
    return F.cross_entropy(logits, labels) + lam * penalty.sum(1).mean()


@GFN_LOSSES.register("neighbor_margin")
def neighbor_margin(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0):
    w = neighbor_weights(ranks, labels, alpha, k)
    return F.cross_entropy(logits + torch.log1p(beta * w).to(logits.dtype), labels)


def gfn_loss(name: str) -> Callable[..., torch.Tensor]:
    return GFN_LOSSES.get(name)
