"""Region loss: the adversarial term over the r members of an evolved region (ER-APT).

FAP trains on one adversarial point per image. ER-APT trains on a *region*: the r fittest members
of the evolved population (:class:`robustune.attacks.evolution.RegionPopulation`). With per-member
adversarial terms ℓ(x_b, x_b + δ_{b,i}) the region loss is

    L_region = (1/B) Σ_b reduce_{i ∈ region(b)} ℓ(x_b, x_b + δ_{b,i}),   reduce ∈ {mean, max},

``mean`` (default) averaging the region and ``max`` keeping its worst member (r = 1: the single
fittest point, so both reduce to FAP's per-sample term).
"""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "max")


def reduce_region(terms: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """(B, r) per-member adversarial terms → (B,) per-image region terms."""
    if terms.dim() != 2:
        raise ValueError(f"expected per-member terms of shape (B, r), got {tuple(terms.shape)}")
    if reduce == "mean":
        return terms.mean(1)
    if reduce == "max":
        return terms.amax(1)
    raise ValueError(f"unknown region reduction {reduce!r}; valid: {', '.join(REDUCTIONS)}")


def region_loss(terms: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Scalar L_region: the batch mean of :func:`reduce_region`."""
    return reduce_region(terms, reduce).mean()


def expand_clean(t: torch.Tensor, r: int) -> torch.Tensor:
    """Repeat each of the B clean rows r times, aligned with a flattened (B·r, ...) region."""
    return t.repeat_interleave(r, 0)
