"""Evolution-based region adversarial examples (ER-APT, Jia et al. 2025, §3 of docs/erapt.md).

PGD gives one adversarial point δ_pgd per image. A genetic search then refines a *population* of
P perturbations around it, and the top-r members form the *region* the training loss covers:

1. population_0 = {δ_pgd} ∪ P−1 variants: Π(δ_pgd + σ·ε·u_i), u_i ~ U(−1,1)^d (``init: noise``),
   or the mutation operator applied to δ_pgd (``init: mutation``); warm members (a per-sample
   population kept from an earlier epoch) replace the first variants when given;
2. for g = 1..G, one of two orders (``order``):
   - ``crossover_first`` (ours): keep the S = ⌈P/2⌉ fittest (elitism), make P−S children by
     crossover of two distinct survivors, mutate the children, score only the children;
   - ``mutate_first`` (the abstract's "selection, mutation, and crossover"): keep the S fittest,
     mutate every survivor but the best (elitism), make P−S children by crossover of two distinct
     mutated survivors; score the S−1 mutants and the children;
   crossover: ``uniform`` per-pixel mask, or ``blend`` a·δ_a + (1−a)·δ_b (a linear combination);
   mutation, per pixel with probability p_mut: ``sign`` δ ← ±ε, ``gaussian`` δ ← δ + σ_m·ε·n,
   ``gradient`` δ ← δ + σ_m·ε·u·sign(g), u ~ U(0,1), g the last PGD step's input gradient (reused:
   no extra backward); every new member is projected (Π: L∞ ball of radius ε, then [0,1]);
3. region = the r fittest of the final population (r = P: all members).

With ``starts = S > 1`` (multi-start *islands*, our default in the ``erapt`` method) the search runs
S independent populations per image, island s seeded by its own PGD point δ_pgd^(s) from its own
random start (island 0: the given δ_pgd), each with its own last gradient sign; the region is the
r fittest members *of each island*, S·r in all, fittest first. Islands never exchange members, so
the region keeps the spread of the PGD starts (measured by benchmarks/erapt_search.py) while each
member is at least as strong as its island's PGD point (elitism).

Fitness is a per-sample adversarial loss evaluated without gradients on the whole batch's
population in one batched forward (chunked by ``max_batch``). Every random number is drawn from
one generator, per generation in a fixed order and shape for the whole batch, so a per-image,
per-individual loop that draws the same tensors reproduces the population exactly
(benchmarks/erapt_cost.py checks it). ER-APT's code was not available to us (the text links it):
this is a hand-written reading,
and every default here is *our* choice (docs/erapt.md, measured by benchmarks/erapt_search.py).
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
from robustune.attacks.islands import island_search
from robustune.attacks.pgd import PGD
from robustune.attacks.population import RegionPopulation, gather_members, rank_members
from robustune.attacks.registry import register_attack

FITNESS = ("kl", "ce", "fap", "neighbor")
ORDERS = ("crossover_first", "mutate_first")
CROSSOVERS = ("uniform", "blend")
MUTATIONS = ("sign", "gaussian", "gradient")
INITS = ("noise", "mutation")
Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
__all__ = ["EvolutionRegion", "RegionPopulation", "fitness_from_outputs", "gather_members", "project_delta",
           "rank_members"]


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
    gate: torch.Tensor  # (B, M, C, H, W) mutation happens where gate < p_mut
    mutation: torch.Tensor  # (B, M, C, H, W) U(0,1) for sign and gradient, N(0,1) for gaussian


def draw_mutation(gen: torch.Generator | None, lead: tuple[int, ...], shape: tuple[int, ...], mutation: str,
                  device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(gate, values) of the mutation of ``lead`` members: gate U(0,1), values U(0,1) or N(0,1)."""
    gate = torch.rand((*lead, *shape), generator=gen, device=device, dtype=dtype)
    sample = torch.randn if mutation == "gaussian" else torch.rand
    return gate, sample((*lead, *shape), generator=gen, device=device, dtype=dtype)


def draw_generation(gen: torch.Generator | None, batch: int, survivors: int, children: int,
                    shape: tuple[int, ...], crossover: str, mutation: str,
                    device: torch.device, dtype: torch.dtype, mutants: int | None = None) -> GenerationDraws:
    """Draw one generation's randomness (the loop reference in the benchmark calls this too).

    ``mutants``: members mutated (default ``children``: crossover_first mutates the children;
    mutate_first mutates the S − 1 non-elite survivors and draws their mutation first).
    """
    kw = dict(generator=gen, device=device)
    mutants = children if mutants is None else mutants
    pre = draw_mutation(gen, (batch, mutants), shape, mutation, device, dtype) if mutants != children else None
    first = torch.randint(0, survivors, (batch, children), **kw)
    offset = torch.randint(0, max(survivors - 1, 1), (batch, children), **kw)
    second = (first + 1 + offset) % survivors if survivors > 1 else first
    cshape = (batch, children, *shape) if crossover == "uniform" else (batch, children, 1, 1, 1)
    cross = torch.rand(cshape, dtype=dtype, **kw)
    gate, mut = pre if pre is not None else draw_mutation(gen, (batch, children), shape, mutation, device, dtype)
    return GenerationDraws(torch.stack([first, second], -1), cross, gate, mut)


def cross(parent_a: torch.Tensor, parent_b: torch.Tensor, values: torch.Tensor, crossover: str) -> torch.Tensor:
    """Crossover: per-pixel choice (``uniform``) or the linear combination w·a + (1 − w)·b (``blend``)."""
    if crossover == "uniform":
        return torch.where(values < 0.5, parent_a, parent_b)
    return values * parent_a + (1 - values) * parent_b


def mutate(delta: torch.Tensor, gate: torch.Tensor, values: torch.Tensor, eps: float, scale: float, p_mut: float,
           mutation: str, direction: torch.Tensor | None = None) -> torch.Tensor:
    """Mutation where ``gate < p_mut`` (before projection); ``direction`` = sign of the last PGD gradient."""
    if mutation == "sign":
        value = torch.where(values < 0.5, -eps, eps).to(delta.dtype)
    elif mutation == "gaussian":
        value = delta + scale * eps * values
    else:
        if direction is None:
            raise ValueError("mutation 'gradient' needs the last PGD step's gradient sign (direction=...)")
        value = delta + scale * eps * values * direction
    return torch.where(gate < p_mut, value, delta)


def breed(parent_a: torch.Tensor, parent_b: torch.Tensor, draws: GenerationDraws, eps: float, sigma: float,
          p_mut: float, crossover: str, mutation: str, direction: torch.Tensor | None = None) -> torch.Tensor:
    """Children perturbations from parents (any leading shape), crossover then mutation, before projection."""
    child = cross(parent_a, parent_b, draws.crossover, crossover)
    return mutate(child, draws.gate, draws.mutation, eps, sigma, p_mut, mutation, direction)


def project_delta(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Π: clip δ to the L∞ ball of radius ε, then so that x + δ ∈ [0,1] (x broadcasts)."""
    return (x + delta.clamp(-eps, eps)).clamp(0.0, 1.0) - x


@register_attack("evolution")
class EvolutionRegion(Attack):
    """PGD start → G generations of a genetic search → the fittest member (the call) or the region.

    Every default is *our* choice (the ER-APT text we hold states no hyper-parameters, and the code
    it links was not available to us); the
    defaults are the configuration chosen by ``benchmarks/erapt_search.py`` (docs/erapt.md).

    Args:
        population: P, individuals per image.
        generations: G (0: the initial population only).
        sigma: σ, noise amplitude of the initial ``noise`` variants, in units of ε.
        p_mut: per-pixel mutation probability.
        order: ``crossover_first`` (crossover, then mutate the children) or ``mutate_first`` (the
            abstract's order: mutate the non-elite survivors, then cross them).
        crossover: ``uniform`` (per-pixel mask) or ``blend`` (linear combination, one weight per child).
        mutation: ``sign`` (±ε, random sign), ``gaussian`` (+σ_m·ε·N(0,1)) or ``gradient``
            (+σ_m·ε·U(0,1)·sign(g), g the last PGD step's gradient, reused without a backward).
        mut_sigma: σ_m, scale of ``gaussian``/``gradient`` mutation in units of ε (None: ``sigma``).
        init: ``noise`` (uniform variants of amplitude σ·ε) or ``mutation`` (the mutation operator
            applied to δ_pgd) for the P − 1 initial variants.
        region: r, members in the region (an int, or ``"all"`` for r = P; default ``max(1, P // 2)``);
            with ``starts > 1``, members per island (the region then has ``starts · r`` members).
        starts: S, PGD starts = independent islands per image (1: one population around δ_pgd).
        fitness: ``kl`` | ``ce`` | ``fap`` | ``neighbor`` (see :func:`fitness_from_outputs`).
        encoder: callable x → (logits, image features) in one pass (for ``fap``); else ``features``.
        features: callable x → image features, used with ``model`` when no encoder is given.
        neighbors: (num_classes, k) class indices for ``neighbor`` fitness.
        max_batch: largest forward during fitness evaluation (None: the whole population at once).
        fitness_dtype: ``fp32`` or ``bf16`` (fitness forwards under bf16 autocast where the device
            supports it; selection only, the region is trained in the run's precision).
        pgd_steps, pgd_alpha, pgd_loss: the PGD start (FAP: 2 steps of 1/255, KL loss).
    """

    name = "evolution"

    def __init__(self, model: nn.Module, eps: float, population: int = 4, generations: int = 1,
                 sigma: float = 0.5, p_mut: float = 1.0, crossover: str = "blend", mutation: str = "gradient",
                 region: int | str | None = None, fitness: str = "kl", encoder: Encoder | None = None,
                 features: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 neighbors: torch.Tensor | None = None, max_batch: int | None = None, pgd_steps: int = 2,
                 pgd_alpha: float | None = None, pgd_loss: str = "kl", order: str = "crossover_first",
                 mut_sigma: float | None = 0.5, init: str = "mutation", fitness_dtype: str = "fp32",
                 starts: int = 1, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        if torch.is_tensor(self.eps):
            raise ValueError("the evolution attack needs a float eps (mutation draws ±ε)")
        if self.norm != "Linf":
            raise ValueError("the evolution attack is defined for norm='Linf' only")
        if population < 1 or generations < 0 or starts < 1:
            raise ValueError(f"need population ≥ 1, generations ≥ 0 and starts ≥ 1, got {population}, "
                             f"{generations}, {starts}")
        for key, value, valid in (("order", order, ORDERS), ("crossover", crossover, CROSSOVERS),
                                  ("mutation", mutation, MUTATIONS), ("init", init, INITS),
                                  ("fitness", fitness, FITNESS), ("fitness_dtype", fitness_dtype, ("fp32", "bf16"))):
            if value not in valid:
                raise ValueError(f"unknown {key} {value!r}; valid: {', '.join(valid)}")
        self.size, self.generations = population, generations
        self.sigma, self.p_mut = sigma, p_mut
        self.mut_sigma = sigma if mut_sigma is None else mut_sigma
        self.order, self.crossover, self.mutation, self.init = order, crossover, mutation, init
        if region == "all":
            region = population
        if region is not None and (not isinstance(region, int) or region < 1):
            raise ValueError(f"region must be a positive int or 'all', got {region!r}")
        self.starts = starts
        self.island_region = min(population, region if region is not None else max(1, population // 2))
        self.region_size = starts * self.island_region
        self.fitness, self.encoder, self.features = fitness, encoder, features
        self.neighbors, self.max_batch, self.fitness_dtype = neighbors, max_batch, fitness_dtype
        alpha = pgd_alpha if pgd_alpha is not None else self.eps
        self.pgd = PGD(model, eps, steps=pgd_steps, alpha=alpha, loss=pgd_loss, seed=self.seed)

    def _autocast(self, device: torch.device):
        if self.fitness_dtype == "bf16" and torch.amp.is_autocast_available(device.type):
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, features or None) of a flat batch, chunked by ``max_batch``, without gradients."""
        step = self.max_batch or x.shape[0]
        logits, feats = [], []
        with torch.no_grad(), self._autocast(x.device):
            for chunk in x.split(step):
                if self.encoder is not None:
                    z, f = self.encoder(chunk)
                else:
                    z = self.model(chunk)
                    f = self.features(chunk) if self.fitness == "fap" and self.features else None
                logits.append(z.float())
                feats.append(None if f is None else f.float())
        return torch.cat(logits), (torch.cat(feats) if feats[0] is not None else None)

    def score(self, members: torch.Tensor, labels: torch.Tensor, clean: tuple) -> torch.Tensor:
        """Fitness (B, K) of (B, K, C, H, W) adversarial images in one (chunked) batched forward."""
        b, k = members.shape[:2]
        logits, feats = self.encode(members.flatten(0, 1))
        rep = lambda t: None if t is None else t.repeat_interleave(k, 0)  # noqa: E731
        value = fitness_from_outputs(self.fitness, logits, labels.repeat_interleave(k), rep(clean[0]),
                                     feats, rep(clean[1]), self.neighbors)
        return value.view(b, k)

    def initial_population(self, x: torch.Tensor, start: torch.Tensor, gen, direction=None,
                           warm: torch.Tensor | None = None, warm_valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P, C, H, W): δ_pgd, then P − 1 variants (warm members first where ``warm_valid``)."""
        d0 = (start - x).unsqueeze(1)
        lead, shape = (x.shape[0], self.size - 1), tuple(x.shape[1:])
        if self.init == "noise":
            noise = torch.rand((*lead, *shape), generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
            variants = d0 + self.sigma * self.eps * noise
        else:
            gate, values = draw_mutation(gen, lead, shape, self.mutation, x.device, x.dtype)
            variants = mutate(d0.expand(*lead, *shape), gate, values, self.eps, self.mut_sigma, self.p_mut,
                              self.mutation, None if direction is None else direction.unsqueeze(1))
        if warm is not None and self.size > 1:
            k = min(warm.shape[1], self.size - 1)
            keep = warm_valid.view(-1, 1, 1, 1, 1).to(x.device)
            variants = torch.cat([torch.where(keep, warm[:, :k].to(variants), variants[:, :k]), variants[:, k:]], 1)
        return torch.cat([d0, project_delta(variants, x.unsqueeze(1), self.eps)], 1)

    def next_generation(self, x, delta, fit, labels, clean, gen, direction) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation: selection, then crossover/mutation in ``self.order``; new members scored."""
        b, p = delta.shape[:2]
        s = math.ceil(p / 2)
        keep = rank_members(fit, s)
        survivors, surv_fit = gather_members(delta, keep), fit.gather(1, keep)
        first = self.order == "mutate_first"
        draws = draw_generation(gen, b, s, p - s, tuple(x.shape[1:]), self.crossover, self.mutation, x.device,
                                x.dtype, mutants=s - 1 if first else None)
        xb = x.unsqueeze(1)
        drc = None if direction is None else direction.unsqueeze(1)
        if first:  # elite unchanged, the other survivors mutated, children crossed from these
            mutants = project_delta(mutate(survivors[:, 1:], draws.gate, draws.mutation, self.eps, self.mut_sigma,
                                           self.p_mut, self.mutation, drc), xb, self.eps)
            parents = torch.cat([survivors[:, :1], mutants], 1)
            pa = gather_members(parents, draws.parents[..., 0])
            pb = gather_members(parents, draws.parents[..., 1])
            child = project_delta(cross(pa, pb, draws.crossover, self.crossover), xb, self.eps)
            new = torch.cat([mutants, child], 1)
            return (torch.cat([survivors[:, :1], new], 1),
                    torch.cat([surv_fit[:, :1], self.score(xb + new, labels, clean)], 1))
        pa = gather_members(survivors, draws.parents[..., 0])
        pb = gather_members(survivors, draws.parents[..., 1])
        child = breed(pa, pb, draws, self.eps, self.mut_sigma, self.p_mut, self.crossover, self.mutation, drc)
        child = project_delta(child, xb, self.eps)
        return torch.cat([survivors, child], 1), torch.cat([surv_fit, self.score(xb + child, labels, clean)], 1)

    def forwards_per_image(self) -> int:
        """Cost per image of one search in forward units (without the clean reference): S·(P + G·new
        members) no-grad forwards, plus 3 per step of the S − 1 extra PGD starts (forward + backward)."""
        p, s = self.size, math.ceil(self.size / 2)
        per_gen = (p - 1) if self.order == "mutate_first" else (p - s)
        search = p + (self.generations * per_gen if p > 1 else 0)
        return self.starts * search + (self.starts - 1) * 3 * self.pgd.steps

    def evolve(self, x: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, gen: torch.Generator | None,
               direction: torch.Tensor | None = None, warm: torch.Tensor | None = None,
               warm_valid: torch.Tensor | None = None, clean: tuple | None = None) -> RegionPopulation:
        """Run the genetic search from the PGD points ``start`` (model already in eval mode).

        ``direction``: sign of the last PGD step's gradient (B, C, H, W), for ``gradient`` mutation;
        ``warm``/``warm_valid``: (B, K, C, H, W) perturbations kept from an earlier search and (B,)
        which of them to use.
        """
        if self.mutation == "gradient" and direction is None:
            raise ValueError("mutation 'gradient' needs the last PGD step's gradient sign (direction=...)")
        x, start = x.detach(), start.detach()
        clean = self.encode(x) if clean is None else clean
        delta = self.initial_population(x, start, gen, direction, warm, warm_valid)
        fit = self.score(x.unsqueeze(1) + delta, labels, clean)
        pgd_fitness, best = fit[:, 0].clone(), [fit.amax(1)]
        for _ in range(self.generations if self.size > 1 else 0):
            delta, fit = self.next_generation(x, delta, fit, labels, clean, gen, direction)
            best.append(fit.amax(1))
        return RegionPopulation(x, x.unsqueeze(1) + delta, fit, rank_members(fit, self.island_region),
                                pgd_fitness, torch.stack(best))

    def search(self, x: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, gen: torch.Generator | None,
               direction: torch.Tensor | None = None, warm: torch.Tensor | None = None,
               warm_valid: torch.Tensor | None = None) -> RegionPopulation:
        """The whole search from FAP's δ_pgd: one population (S = 1) or S islands
        (:func:`robustune.attacks.islands.island_search`); the model is already in eval mode."""
        if self.starts == 1:
            return self.evolve(x, labels, start, gen, direction, warm, warm_valid)
        return island_search(self, x, labels, start, gen, direction, warm, warm_valid)

    def region_population(self, images: torch.Tensor, labels: torch.Tensor,
                          generator: torch.Generator | None = None, start: torch.Tensor | None = None,
                          direction: torch.Tensor | None = None, warm: torch.Tensor | None = None,
                          warm_valid: torch.Tensor | None = None) -> RegionPopulation:
        """The full result. ``start``: PGD adversarial images to start from (else PGD is run here,
        and its last gradient sign is the ``direction``)."""
        gen = generator if generator is not None else self.make_generator(images.device)
        x = images.detach()
        if start is None:
            start = self.pgd(x, labels, generator=gen)
            direction = self.pgd.last_direction
        with eval_mode(self.model) if getattr(self, "use_eval_mode", True) else contextlib.nullcontext():
            return self.search(x, labels.detach(), start, gen, direction, warm, warm_valid)

    def perturb(self, x, y, generator):
        start = self.pgd.perturb(x, y, generator)
        return self.search(x, y, self.project(start, x), generator, self.pgd.last_direction).best

