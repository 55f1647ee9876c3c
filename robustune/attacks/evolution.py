"""Evolution-based region adversarial examples (ER-APT, Jia et al. 2025, §3 of docs/erapt.md).

PGD gives one adversarial point δ_pgd per image. A genetic search then refines a *population* of
P perturbations around it, and the top-r members form the *region* the training loss covers:

1. population_0 = {δ_pgd} ∪ {Π(δ_pgd + σ·ε·u_i), u_i ~ U(−1,1)^d, i = 1..P−1};
2. for g = 1..G: keep the S = ⌈P/2⌉ fittest (elitism), make P−S children by crossover of two
   distinct survivors (uniform per-pixel mask, or arithmetic blend a·δ_a + (1−a)·δ_b) and
   mutation (per pixel with probability p_mut: δ ← ±ε with a random sign, or δ ← δ + σ·ε·n),
   project them (Π: L∞ ball of radius ε, then valid pixels [0,1]) and score only the children;
3. region = the r fittest of the final population.

Fitness is a per-sample adversarial loss evaluated without gradients on the whole batch's
population in one batched forward (chunked by ``max_batch``). Every random number is drawn from
one generator, per generation in a fixed order and shape for the whole batch, so a per-image,
per-individual loop that draws the same tensors reproduces the population exactly
(benchmarks/erapt_cost.py checks it). ER-APT's code is not public: this is a hand-written reading.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from robustune.attacks.base import Attack, eval_mode
from robustune.attacks.pgd import PGD
from robustune.attacks.registry import register_attack

FITNESS = ("kl", "ce", "fap", "neighbor")
Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


def fitness_from_outputs(name: str, logits: torch.Tensor, labels: torch.Tensor, clean_logits: torch.Tensor,
                         feats: torch.Tensor | None = None, clean_feats: torch.Tensor | None = None,
                         neighbors: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample fitness (N,) of adversarial outputs against their clean counterparts.

    - ``kl``: KL(p(x) ‖ p(x+δ)) (FAP's inner loss);
    - ``ce``: CE(z(x+δ), y);
    - ``fap``: KL(p(x) ‖ p(x+δ)) · (1 + cos(f(x), f(x+δ))) (FAP's adversarial training term);
    - ``neighbor``: log Σ_{j∈N_k(y)} p_j(x+δ) − log p_y(x+δ), pushing toward the k classes most
      similar to y (``neighbors``: (num_classes, k) class indices).
    """
    logp_adv = F.log_softmax(logits.float(), dim=1)
    if name in ("kl", "fap"):
        logp_clean = F.log_softmax(clean_logits.float(), dim=1)
        value = (logp_clean.exp() * (logp_clean - logp_adv)).sum(1)
        if name == "fap":
            if feats is None or clean_feats is None:
                raise ValueError("fitness 'fap' needs image features: pass encoder=... or features=...")
            value = value * (1 + F.cosine_similarity(clean_feats.float(), feats.float(), dim=1))
        return value
    if name == "ce":
        return F.nll_loss(logp_adv, labels, reduction="none")
    if name == "neighbor":
        if neighbors is None:
            raise ValueError("fitness 'neighbor' needs a (num_classes, k) neighbors table")
        near = logp_adv.gather(1, neighbors[labels]).logsumexp(1)
        return near - logp_adv.gather(1, labels[:, None]).squeeze(1)
    raise ValueError(f"unknown fitness {name!r}; valid: {', '.join(FITNESS)}")


@dataclass
class GenerationDraws:
    """The random tensors of one generation, drawn for the whole batch in a fixed order."""

    parents: torch.Tensor  # (B, K, 2) long: indices among the S survivors, distinct when S > 1
    crossover: torch.Tensor  # (B, K, C, H, W) uniform mask values, or (B, K, 1, 1, 1) blend weights
    gate: torch.Tensor  # (B, K, C, H, W) mutation happens where gate < p_mut
    mutation: torch.Tensor  # (B, K, C, H, W) U(0,1) for the sign, or N(0,1) for gaussian


def draw_generation(gen: torch.Generator | None, batch: int, survivors: int, children: int,
                    shape: tuple[int, ...], crossover: str, mutation: str,
                    device: torch.device, dtype: torch.dtype) -> GenerationDraws:
    """Draw one generation's randomness (the loop reference in the benchmark calls this too)."""
    kw = dict(generator=gen, device=device)
    first = torch.randint(0, survivors, (batch, children), **kw)
    offset = torch.randint(0, max(survivors - 1, 1), (batch, children), **kw)
    second = (first + 1 + offset) % survivors if survivors > 1 else first
    cshape = (batch, children, *shape) if crossover == "uniform" else (batch, children, 1, 1, 1)
    cross = torch.rand(cshape, dtype=dtype, **kw)
    gate = torch.rand((batch, children, *shape), dtype=dtype, **kw)
    sample = torch.rand if mutation == "sign" else torch.randn
    mut = sample((batch, children, *shape), dtype=dtype, **kw)
    return GenerationDraws(torch.stack([first, second], -1), cross, gate, mut)


def breed(parent_a: torch.Tensor, parent_b: torch.Tensor, draws: GenerationDraws, eps: float, sigma: float,
          p_mut: float, crossover: str, mutation: str) -> torch.Tensor:
    """Children perturbations from parents (any leading shape), before projection."""
    if crossover == "uniform":
        child = torch.where(draws.crossover < 0.5, parent_a, parent_b)
    else:
        child = draws.crossover * parent_a + (1 - draws.crossover) * parent_b
    mutate = draws.gate < p_mut
    if mutation == "sign":
        value = torch.where(draws.mutation < 0.5, -eps, eps).to(child.dtype)
    else:
        value = child + sigma * eps * draws.mutation
    return torch.where(mutate, value, child)


def project_delta(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Π: clip δ to the L∞ ball of radius ε, then so that x + δ ∈ [0,1] (x broadcasts)."""
    return (x + delta.clamp(-eps, eps)).clamp(0.0, 1.0) - x


@register_attack("evolution")
class EvolutionRegion(Attack):
    """PGD start → G generations of a genetic search → the fittest member (the call) or the region.

    Args:
        population: P, individuals per image.
        generations: G (0: the initial population only).
        sigma: σ, noise amplitude of the initial variants (and of gaussian mutation), in units of ε.
        p_mut: per-pixel mutation probability.
        crossover: ``uniform`` (per-pixel mask) or ``blend`` (arithmetic, one weight per child).
        mutation: ``sign`` (±ε, random sign) or ``gaussian`` (+σ·ε·N(0,1)).
        region: r, members in the region (default ``max(1, P // 2)``, the paper's r = P/2).
        fitness: ``kl`` | ``ce`` | ``fap`` | ``neighbor`` (see :func:`fitness_from_outputs`).
        encoder: callable x → (logits, image features) in one pass (for ``fap``); else ``features``.
        features: callable x → image features, used with ``model`` when no encoder is given.
        neighbors: (num_classes, k) class indices for ``neighbor`` fitness.
        max_batch: largest forward during fitness evaluation (None: the whole population at once).
        pgd_steps, pgd_alpha, pgd_loss: the PGD start (FAP: 2 steps of 1/255, KL loss).
    """

    name = "evolution"

    def __init__(self, model: nn.Module, eps: float, population: int = 8, generations: int = 3,
                 sigma: float = 0.5, p_mut: float = 0.1, crossover: str = "uniform", mutation: str = "sign",
                 region: int | None = None, fitness: str = "kl", encoder: Encoder | None = None,
                 features: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 neighbors: torch.Tensor | None = None, max_batch: int | None = None, pgd_steps: int = 2,
                 pgd_alpha: float | None = None, pgd_loss: str = "kl", **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        if torch.is_tensor(self.eps):
            raise ValueError("the evolution attack needs a float eps (mutation draws ±ε)")
        if self.norm != "Linf":
            raise ValueError("the evolution attack is defined for norm='Linf' only")
        if population < 1 or generations < 0:
            raise ValueError(f"need population ≥ 1 and generations ≥ 0, got {population}, {generations}")
        if crossover not in ("uniform", "blend") or mutation not in ("sign", "gaussian"):
            raise ValueError(f"crossover ∈ (uniform, blend), mutation ∈ (sign, gaussian); got "
                             f"{crossover!r}, {mutation!r}")
        if fitness not in FITNESS:
            raise ValueError(f"unknown fitness {fitness!r}; valid: {', '.join(FITNESS)}")
        self.size, self.generations = population, generations
        self.sigma, self.p_mut = sigma, p_mut
        self.crossover, self.mutation = crossover, mutation
        self.region_size = min(population, region if region is not None else max(1, population // 2))
        self.fitness, self.encoder, self.features = fitness, encoder, features
        self.neighbors, self.max_batch = neighbors, max_batch
        alpha = pgd_alpha if pgd_alpha is not None else self.eps
        self.pgd = PGD(model, eps, steps=pgd_steps, alpha=alpha, loss=pgd_loss, seed=self.seed)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, features or None) of a flat batch, chunked by ``max_batch``, without gradients."""
        step = self.max_batch or x.shape[0]
        logits, feats = [], []
        with torch.no_grad():
            for chunk in x.split(step):
                if self.encoder is not None:
                    z, f = self.encoder(chunk)
                else:
                    z = self.model(chunk)
                    f = self.features(chunk) if self.fitness == "fap" and self.features else None
                logits.append(z)
                feats.append(f)
        return torch.cat(logits), (torch.cat(feats) if feats[0] is not None else None)

    def score(self, members: torch.Tensor, labels: torch.Tensor, clean: tuple) -> torch.Tensor:
        """Fitness (B, K) of (B, K, C, H, W) adversarial images in one (chunked) batched forward."""
        b, k = members.shape[:2]
        logits, feats = self.encode(members.flatten(0, 1))
        rep = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
        value = fitness_from_outputs(self.fitness, logits, labels.repeat_interleave(k), rep(clean[0]),
                                     feats, rep(clean[1]), self.neighbors)
        return value.view(b, k)

    def initial_population(self, x: torch.Tensor, start: torch.Tensor, gen) -> torch.Tensor:
        """(B, P, C, H, W) perturbations: δ_pgd and P−1 projected uniform variants of amplitude σ·ε."""
        d0 = (start - x).unsqueeze(1)
        noise = torch.rand((x.shape[0], self.size - 1, *x.shape[1:]), generator=gen, device=x.device,
                           dtype=x.dtype) * 2 - 1
        variants = project_delta(d0 + self.sigma * self.eps * noise, x.unsqueeze(1), self.eps)
        return torch.cat([d0, variants], 1)

    def evolve(self, x: torch.Tensor, labels: torch.Tensor, start: torch.Tensor,
               gen: torch.Generator | None) -> RegionPopulation:
        """Run the genetic search from the PGD points ``start`` (model already in eval mode)."""
        x, start = x.detach(), start.detach()
        b, p = x.shape[0], self.size
        clean = self.encode(x)
        delta = self.initial_population(x, start, gen)
        fit = self.score(x.unsqueeze(1) + delta, labels, clean)
        pgd_fitness, best = fit[:, 0].clone(), [fit.amax(1)]
        s = math.ceil(p / 2)
        for _ in range(self.generations if p > 1 else 0):
            keep = rank_members(fit, s)
            survivors, surv_fit = gather_members(delta, keep), fit.gather(1, keep)
            draws = draw_generation(gen, b, s, p - s, tuple(x.shape[1:]), self.crossover, self.mutation,
                                    x.device, x.dtype)
            pa = gather_members(survivors, draws.parents[..., 0])
            pb = gather_members(survivors, draws.parents[..., 1])
            child = breed(pa, pb, draws, self.eps, self.sigma, self.p_mut, self.crossover, self.mutation)
            child = project_delta(child, x.unsqueeze(1), self.eps)
            delta = torch.cat([survivors, child], 1)
            fit = torch.cat([surv_fit, self.score(x.unsqueeze(1) + child, labels, clean)], 1)
            best.append(fit.amax(1))
        return RegionPopulation(x, x.unsqueeze(1) + delta, fit, rank_members(fit, self.region_size),
                                pgd_fitness, torch.stack(best))

    def region_population(self, images: torch.Tensor, labels: torch.Tensor,
                          generator: torch.Generator | None = None,
                          start: torch.Tensor | None = None) -> RegionPopulation:
        """The full result. ``start``: PGD adversarial images to start from (else PGD is run here)."""
        gen = generator if generator is not None else self.make_generator(images.device)
        x = images.detach()
        if start is None:
            start = self.pgd(x, labels, generator=gen)
        with eval_mode(self.model) if getattr(self, "use_eval_mode", True) else contextlib.nullcontext():
            return self.evolve(x, labels.detach(), start, gen)

    def perturb(self, x, y, generator):
        start = self.pgd.perturb(x, y, generator)
        return self.evolve(x, y, self.project(start, x), generator).best
