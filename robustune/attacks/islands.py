"""Multi-start islands of the evolution-based region (ER-APT, issue 20; our reading of "region").

A region trained on must be spread over the ε-ball, not a cluster around one PGD point: with
``starts = S > 1`` the search runs S independent populations per image, island s seeded by its own
PGD point from its own uniform random start (island 0: FAP's δ_pgd), each with its own last
gradient sign for the ``gradient`` mutation. Islands never exchange members, so the region — the r
fittest members of each island — keeps the spread of the PGD starts (about the ball's half-diagonal
ε·√d apart on the tiny CLIP, benchmarks/erapt_search.py), and by elitism each island's best is at
least as strong as its own PGD point. The islands run as one search over the batch repeated S
times (row b·S + s is island s of image b), so every island is scored in the same batched forwards.
All of this is *our* choice (the ER-APT text we hold does not describe it; the code it links was
not available to us). ``attack`` is an
:class:`~robustune.attacks.evolution.EvolutionRegion` (its ``pgd``, ``starts``, ``encode`` and ``evolve``).
"""

from __future__ import annotations

import torch

from robustune.attacks.base import Attack
from robustune.attacks.population import RegionPopulation


def island_starts(attack: Attack, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, S − 1, C, H, W) PGD points of the extra islands, from fresh random starts drawn from
    ``gen`` in one batched PGD run, and their last gradient signs (or None)."""
    k = attack.starts - 1
    adv = attack.pgd(x.repeat_interleave(k, 0), labels.repeat_interleave(k, 0), generator=gen)
    direction = attack.pgd.last_direction
    view = lambda t: None if t is None else t.view(x.shape[0], k, *x.shape[1:])  # noqa: E731
    return view(adv.detach()), view(direction)


def island_search(attack: Attack, x: torch.Tensor, labels: torch.Tensor, start: torch.Tensor,
                  gen: torch.Generator | None, direction: torch.Tensor | None = None,
                  warm: torch.Tensor | None = None, warm_valid: torch.Tensor | None = None) -> RegionPopulation:
    """S islands from FAP's δ_pgd and S − 1 fresh PGD points (model already in eval mode).

    Islands run as one search over the batch repeated S times (row b·S + s is island s of image
    b); the warm members (if any) seed island 0. The result is merged per image: population
    (B, S·P), the region the r fittest of each island sorted by fitness, ``pgd_fitness`` the
    fitness of δ_pgd (island 0's start).
    """
    b, s = x.shape[0], attack.starts
    extra, extra_dir = island_starts(attack, x, labels, gen)
    starts = torch.cat([start.detach().unsqueeze(1), extra], 1).flatten(0, 1)
    dirs = None if direction is None or extra_dir is None else \
        torch.cat([direction.unsqueeze(1), extra_dir], 1).flatten(0, 1)
    if warm is not None:
        first = (torch.arange(b * s, device=warm_valid.device) % s) == 0
        warm, warm_valid = warm.repeat_interleave(s, 0), warm_valid.repeat_interleave(s) & first
    clean = tuple(None if t is None else t.repeat_interleave(s, 0) for t in attack.encode(x.detach()))
    res = attack.evolve(x.repeat_interleave(s, 0), labels.repeat_interleave(s, 0), starts, gen, dirs, warm,
                        warm_valid, clean=clean)
    return merge_islands(res, b, s)


def merge_islands(res: RegionPopulation, batch: int, islands: int) -> RegionPopulation:
    """Per-image view of a search run on the batch repeated ``islands`` times (row b·S + s)."""
    p, r = res.fitness.shape[1], res.region_index.shape[1]
    tail = res.population.shape[2:]
    fitness = res.fitness.reshape(batch, islands * p)
    offset = (torch.arange(islands, device=fitness.device) * p).view(1, islands, 1)
    index = (res.region_index.view(batch, islands, r) + offset).flatten(1)
    order = torch.sort(fitness.gather(1, index), dim=1, descending=True, stable=True).indices
    return RegionPopulation(res.clean.view(batch, islands, *tail)[:, 0],
                            res.population.reshape(batch, islands * p, *tail), fitness, index.gather(1, order),
                            res.pgd_fitness.view(batch, islands)[:, 0],
                            res.best_fitness.view(-1, batch, islands).amax(2))
