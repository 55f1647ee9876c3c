"""Per-sample population warm start across epochs (ER-APT, issue 13; our option, not the paper's).

The evolution starts each step from δ_pgd and P − 1 fresh variants. With a warm start, the K
fittest members of the last search on the same training image (keyed by its index in the training
set) replace the first K variants the next time that image is drawn: perturbations found in
earlier epochs are re-scored against the current prompts and kept if they are still the fittest,
so the search accumulates strength across epochs at no extra forward.

Storage: δ/ε quantised to int8 (δ ≈ q·ε/127), (N, K, C, H, W) bytes for N training images, plus
an (N,) flag of which images have been searched. Both are buffers, saved in checkpoints, so a
resumed run reads the same memory as an uninterrupted one (the uninterrupted run also reads the
quantised values back, hence bit-identical).
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 127


class PopulationMemory(nn.Module):
    """Index-keyed store of K perturbations per training image (lazily sized on first use)."""

    def __init__(self, members: int, eps: float) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"warm_members must be ≥ 1, got {members}")
        self.members, self.eps = members, float(eps)
        self.register_buffer("delta", torch.zeros(0, dtype=torch.int8))
        self.register_buffer("valid", torch.zeros(0, dtype=torch.bool))

    def ensure(self, size: int, shape: tuple[int, ...], device: torch.device) -> None:
        """Room for at least ``size`` images of ``shape`` (grows with zeros / not-searched flags)."""
        have = self.valid.numel()
        if have == 0:
            self.delta = torch.zeros((size, self.members, *shape), dtype=torch.int8, device=device)
            self.valid = torch.zeros(size, dtype=torch.bool, device=device)
        elif size > have:
            self.delta = torch.cat([self.delta, self.delta.new_zeros((size - have, *self.delta.shape[1:]))])
            self.valid = torch.cat([self.valid, self.valid.new_zeros(size - have)])

    def lookup(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """((B, K, C, H, W) float perturbations, (B,) whether each image has any) for these indices."""
        idx = self._check(indices)
        return self.delta[idx].float() * (self.eps / LEVELS), self.valid[idx]

    def store(self, indices: torch.Tensor, delta: torch.Tensor) -> None:
        """Keep (B, ≥K, C, H, W) perturbations, fittest first, for these indices."""
        idx = self._check(indices)
        q = (delta[:, :self.members].detach().float() * (LEVELS / self.eps)).round().clamp(-LEVELS, LEVELS)
        self.delta[idx] = q.to(torch.int8)
        self.valid[idx] = True

    def _check(self, indices: torch.Tensor) -> torch.Tensor:
        if self.valid.numel() == 0:
            raise RuntimeError("the population memory is not allocated: call ensure() first")
        idx = indices.to(self.valid.device).long()
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.valid.numel()):
            raise IndexError(f"sample index out of range 0..{self.valid.numel() - 1}")
        return idx

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("delta", "valid"):  # the stored tensors decide the size
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
