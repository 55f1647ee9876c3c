"""GFN's inter-class distance weighted loss (Sec. 3.3, Eqs. 7–8) in its explicit readings.

Eq. 7: w = (w_1, …, w_C), w_p = α^{rank_c(p)} with 0 < α < 1 and p "the predicted class", so the
nearest neighbours of the true class c weigh most. Read literally, Eq. 8 (−y_c·w·log softmax) with a
one-hot y_c collapses to cross-entropy, so every loss below is a reading — *ours*, the paper
publishes no code (../shared/spec/gfn.md §3). Here w_j = α^{rank_c(j)} for j ∈ N_k(c), 0 elsewhere
(:func:`neighbor_weights`). The per-class readings act through the model's probabilities on x', so
probability on a near class costs more than on a far one:

- ``neighbor_margin`` (the default of ``gfn``): a similarity-weighted softmax denominator,
  −log( e^{z_c} / Σ_j (1 + β·w_j)·e^{z_j} ) = CE on logits z_j + log(1 + β·w_j). The gradient on a
  neighbour logit is (1 + β·w_j)·e^{z_j}/Z', so β sets the strength (β = 0 gives CE; at β = 1 and
  α = 0.5 it is only ×1.5 at rank 1, which is why β is measured, docs/gfn.md).
- ``neighbor_additive``: CE on logits z_j + m·w_j/α (an additive neighbour margin, m at rank 1,
  m·α^{r−1} at rank r; ``margin`` = m). m = 0 gives CE.
- ``predicted_rank``: (1 + β·w_{ŷ}·[ŷ ≠ c])·CE with ŷ = argmax f(x') (Eq. 7's "predicted class p";
  the weight is not differentiated). β = 0 gives CE.
- ``neighbor_suppression``: CE + λ·Σ_{j∈N_k(c)} w_j·(−log(1 − softmax_j(f(x')))). λ = 0 gives CE.
- ``ce``: CE(f(x'), c), the paper's "Nbr." row.
- ``rank_weighted``: α^{rank_c(p)}·CE for the *drawn target* p, normalised to mean 1 over N_k(c).
  NOT a per-class reading: it looks at no other class's probability (in expectation it is ``nbr``
  with targets drawn ∝ α^rank) and its per-sample weights shrink the effective batch by E[w²]
  (:func:`rank_weight_second_moment`: ≈ 6.7 at k = 20, α = 0.5 — a batch of 64 acts like ≈ 10
  samples). Kept as a labelled option (it was this project's default before issue 20).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from robustune.registry import Registry

GFN_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("GFN loss")


def neighbor_weights(ranks: torch.Tensor, labels: torch.Tensor, alpha: float, k: int) -> torch.Tensor:
    """(N, C) weights w_j = α^{rank_c(j)} for j ∈ N_k(c) of each sample's class c, 0 elsewhere (Eq. 7)."""
    r = ranks.to(labels.device)[labels]
    inside = (r >= 1) & (r <= k)
    return torch.where(inside, torch.as_tensor(alpha, dtype=torch.float32) ** r.float(),
                       torch.zeros((), dtype=torch.float32))


def rank_weight_second_moment(alpha: float, k: int) -> float:
    """E[w²] of ``rank_weighted``'s weights under uniform targets (effective batch = batch / E[w²])."""
    w = alpha ** torch.arange(1, k + 1, dtype=torch.float64)
    w = w / w.mean()
    return float((w ** 2).mean())


@GFN_LOSSES.register("ce")
def ce(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0, margin=1.0):
    """Plain CE on x' (the paper's "Nbr." row)."""
    return F.cross_entropy(logits, labels)


@GFN_LOSSES.register("rank_weighted")
def rank_weighted(logits, labels, targets, ranks, alpha=0.5, k=20, lam=1.0, beta=1.0, margin=1.0):
    """α^{rank_c(p)}·CE for the drawn target p, weights mean 1 over N_k(c). Not a per-class reading:
    it reweights samples, not classes, and costs effective batch size (E[w²] ≈ 6.7 at k = 20, α = 0.5)."""
    r = ranks.to(labels.device)[labels, targets].float()
    norm = (alpha ** torch.arange(1, k + 1, dtype=torch.float32)).mean()
    w = alpha ** r / norm
    return (w * F.cross_entropy(logits, labels, reduction="none")).mean()


@GFN_LOSSES.register("neighbor_suppression")
def neighbor_suppression(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0,
                         margin=1.0):
    """CE + λ·Σ_{j∈N_k(c)} w_j·(−log(1 − p_j)): probability on near classes costs more (Eq. 7 weights)."""
    w = neighbor_weights(ranks, labels, alpha, k)
    p = logits.float().softmax(dim=1)
    penalty = -(torch.log1p(-p.clamp(max=1 - 1e-6))) * w
    return F.cross_entropy(logits, labels) + lam * penalty.sum(1).mean()


@GFN_LOSSES.register("neighbor_margin")
def neighbor_margin(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0,
                    margin=1.0):
    """Similarity-weighted softmax denominator Σ_j (1 + β·w_j)·e^{z_j} (Eqs. 7–8, our reading)."""
    w = neighbor_weights(ranks, labels, alpha, k)
    return F.cross_entropy(logits + torch.log1p(beta * w).to(logits.dtype), labels)


@GFN_LOSSES.register("neighbor_additive")
def neighbor_additive(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0,
                      margin=1.0):
    """CE on z_j + m·w_j/α: an additive margin of m on the nearest neighbour, m·α^{r−1} at rank r."""
    w = neighbor_weights(ranks, labels, alpha, k) / alpha
    return F.cross_entropy(logits + (margin * w).to(logits.dtype), labels)


@GFN_LOSSES.register("predicted_rank")
def predicted_rank(logits, labels, targets=None, ranks=None, alpha=0.5, k=20, lam=1.0, beta=1.0,
                   margin=1.0):
    """(1 + β·α^{rank_c(ŷ)}·[ŷ ≠ c, ŷ ∈ N_k(c)])·CE, ŷ = argmax f(x'): Eq. 7's weight of the predicted class."""
    w = neighbor_weights(ranks, labels, alpha, k)
    pred = logits.detach().argmax(dim=1, keepdim=True)
    weight = 1 + beta * w.gather(1, pred).squeeze(1)  # w_c = 0: a right prediction keeps weight 1
    return (weight.to(logits.dtype) * F.cross_entropy(logits, labels, reduction="none")).mean()


def gfn_loss(name: str) -> Callable[..., torch.Tensor]:
    """The loss reading registered under ``name`` (see the module docstring)."""
    return GFN_LOSSES.get(name)
