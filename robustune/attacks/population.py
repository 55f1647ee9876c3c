"""The final population of an evolution run and the helpers that index it (ER-APT, docs/erapt.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RegionPopulation:
    """The final population of an evolution run.

    Attributes:
        clean: (B, C, H, W) clean images x.
        population: (B, P, C, H, W) adversarial images x + δ_i, all within ε of x and in [0,1].
        fitness: (B, P) fitness of each member (higher = more adversarial).
        region_index: (B, r) indices of the r fittest members, fittest first.
        pgd_fitness: (B,) fitness of the PGD start δ_pgd (member 0 of the first generation).
        best_fitness: (G+1, B) best fitness per image after each generation (0 = initial).
    """

    clean: torch.Tensor
    population: torch.Tensor
    fitness: torch.Tensor
    region_index: torch.Tensor
    pgd_fitness: torch.Tensor
    best_fitness: torch.Tensor

    @property
    def delta(self) -> torch.Tensor:
        """(B, P, C, H, W) perturbations δ_i = x_i' − x."""
        return self.population - self.clean.unsqueeze(1)

    @property
    def region(self) -> torch.Tensor:
        """(B, r, C, H, W) the region's adversarial images, fittest first."""
        return gather_members(self.population, self.region_index)

    @property
    def best(self) -> torch.Tensor:
        """(B, C, H, W) the fittest member per image."""
        return gather_members(self.population, self.region_index[:, :1]).squeeze(1)


def gather_members(population: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``population[b, index[b, k]]`` for a (B, P, ...) population and (B, K) indices."""
    shape = index.shape + (1,) * (population.dim() - 2)
    return population.gather(1, index.view(shape).expand(*index.shape, *population.shape[2:]))


def rank_members(fitness: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k fittest members; ties go to the lower index (stable sort)."""
    return torch.sort(fitness, dim=1, descending=True, stable=True).indices[:, :k]
