"""GFN and the baselines of its Table 3 as methods: ``gfn``, ``nbr``, ``adv_untargeted``,
``sign_noise``, ``trades``.

Each step of ``gfn`` (Sec. 3.4): (a) x' = one targeted sign step from x toward a neighbour class
p ~ Uniform(N_k(c)) (input gradient only, no parameter update); (b) update θ on the distance
weighted loss of f(x') — by default the similarity-weighted softmax denominator
(``neighbor_margin``, β = 10: *our* reading and strength, chosen by measurement, docs/gfn.md).
``nbr`` is (a) + plain CE; ``adv_untargeted`` an untargeted sign step of the same η + CE (Eq. 3);
``sign_noise`` a random ±η sign step + CE (a control of ours: perturbation without a gradient).
``trades`` (Zhang et al. 2019) is the standard adversarial baseline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustune import distributed as dist
from robustune.attacks import PGD
from robustune.gfn.perturbation import NeighborPerturbation, pixel_step, rank_target_probs
from robustune.gfn.similarity import ClassSimilarity, clamp_k, class_similarity, neighbor_ranks, neighbor_table
from robustune.losses.gfn import gfn_loss
from robustune.methods.base import Method, SetupContext, register_method

log = logging.getLogger(__name__)


@dataclass
class GFNParams:
    eta: float = 0.01  # step of Eq. 5, in eta_space units
    eta_space: str = "normalized"  # normalized (ours: model-input units; the paper gives none) | pixel
    steps: int = 1
    eps: float | None = None  # radius for steps > 1 (default steps·eta)
    k: int = 20
    alpha: float = 0.5
    loss: str = "neighbor_margin"  # see robustune.losses.gfn: neighbor_margin | neighbor_additive |
    #   predicted_rank | neighbor_suppression | ce | rank_weighted (not per-class; costs effective batch)
    lam: float = 1.0  # λ of neighbor_suppression
    beta: float = 10.0  # β of neighbor_margin / predicted_rank (ours, measured: docs/gfn.md)
    margin: float = 1.0  # m of neighbor_additive
    target_sampling: str = "uniform"  # uniform (ours: Sec. 3.4 says "randomly") | alpha_rank (p ∝ α^rank, ours)
    similarity_source: str = "features"  # features | head_weights
    max_per_class: int = 100
    refresh_every: int = 0  # 0: compute once from the starting model; N: every N epochs
    include_clean: bool = False
    perturb_eval_mode: bool = True


class SimilarityRefresh:
    """Class similarity (Eq. 4) computed before the first step, saved in the run folder and
    recomputed every ``params.refresh_every`` epochs; shared by ``gfn`` and ``gfn_det``.

    The host class defines ``compute_similarity(ctx)``, which fills its ``similarity`` and ``ranks`` buffers.
    """

    def setup(self, ctx: SetupContext) -> None:
        self.similarity_once(ctx)
        if ctx.run_dir is not None and dist.is_main_process():
            from robustune.data.splits import classes_of

            ClassSimilarity(self.similarity.cpu(), self.ranks.cpu(), classes_of(ctx.train_set)).save(ctx.run_dir)

    def on_epoch_start(self, epoch: int, ctx: SetupContext) -> None:
        n = self.params.refresh_every
        if n and epoch > 0 and epoch % n == 0:
            log.info("refreshing the class similarity at epoch %d", epoch + 1)
            self.similarity_once(ctx)

    def similarity_once(self, ctx: SetupContext) -> None:
        """``compute_similarity`` on rank 0 only under DDP, its result broadcast to the other ranks
        (the setup may decode up to ``max_per_class`` images per class: done once, not per rank)."""
        if dist.is_main_process():
            self.compute_similarity(ctx)
        dist.broadcast_(self.similarity)
        dist.broadcast_(self.ranks)


@register_method("gfn")
class GFN(SimilarityRefresh, Method):
    """Neighbour-targeted perturbation + inter-class distance weighted loss."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = GFNParams
    default_loss: str | None = None  # subclasses pin the loss (``nbr``: ce)

    def __init__(self, model, params: GFNParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        gfn_loss(self.loss_name)  # fail fast on a bad name
        if not 0 < params.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {params.alpha}")
        if params.target_sampling not in ("uniform", "alpha_rank"):
            raise ValueError(f"target_sampling must be uniform or alpha_rank, got {params.target_sampling!r}")
        self.k = clamp_k(params.k, num_classes)
        self.target_probs = (rank_target_probs(params.alpha, self.k)
                             if params.target_sampling == "alpha_rank" else None)
        self.register_buffer("similarity", torch.zeros(num_classes, num_classes))
        self.register_buffer("ranks", torch.zeros(num_classes, num_classes, dtype=torch.long))
        self.perturb = NeighborPerturbation(model, params.eta, params.steps, params.eps,
                                            params.eta_space, params.perturb_eval_mode)

    @property
    def loss_name(self) -> str:
        return self.default_loss or self.params.loss

    def compute_similarity(self, ctx: SetupContext) -> None:
        p = self.params
        sim = class_similarity(self.model, ctx.train_set, self.num_classes, p.similarity_source,
                               **({} if p.similarity_source == "head_weights" else
                                  dict(max_per_class=p.max_per_class, batch_size=ctx.batch_size,
                                       device=ctx.device, seed=ctx.seed)))
        self.similarity.copy_(sim.to(self.similarity.device))
        self.ranks.copy_(neighbor_ranks(sim).to(self.ranks.device))

    def training_step(self, images, labels, ctx):
        p = self.params
        table = neighbor_table(self.ranks, self.k)
        adv, targets = self.perturb(images, labels, table, generator=ctx.generator, probs=self.target_probs)
        logits = self.model(adv)
        loss = gfn_loss(self.loss_name)(logits, labels, targets, self.ranks, alpha=p.alpha, k=self.k,
                                        lam=p.lam, beta=p.beta, margin=p.margin)
        logs = {"target_rank": self.ranks[labels, targets].float().mean()}
        if p.include_clean:
            loss = loss + F.cross_entropy(self.model(images), labels)
        return {"loss": loss, "logits": logits, "logs": logs}


@register_method("nbr")
class Nbr(GFN):
    """Neighbour-targeted perturbation + plain CE (the paper's "Nbr." ablation)."""

    default_loss = "ce"


def perturbed_ce(method: Method, perturbed: torch.Tensor, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """CE on the perturbed images, plus CE on the clean ones with ``params.include_clean``."""
    logits = method.model(perturbed)
    loss = F.cross_entropy(logits, labels)
    if method.params.include_clean:
        loss = loss + F.cross_entropy(method.model(images), labels)
    return {"loss": loss, "logits": logits, "logs": {}}


@dataclass
class UntargetedParams:
    eta: float = 0.01
    eta_space: str = "normalized"
    include_clean: bool = False


@register_method("adv_untargeted")
class AdvUntargeted(Method):
    """One untargeted sign step (Eq. 3) + CE: the paper's "Adv." row (the same η as GFN: ours)."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = UntargetedParams

    def __init__(self, model, params: UntargetedParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        step = pixel_step(model, params.eta, params.eta_space)
        self.attack = PGD(model, eps=step, steps=1, alpha=step, random_start=False)

    def training_step(self, images, labels, ctx):
        return perturbed_ce(self, self.attack(images, labels, generator=ctx.generator), images, labels)


@register_method("sign_noise")
class SignNoise(Method):
    """x' = clip_[0,1](x + η·s), s uniform in {−1, +1} per pixel, + CE: the random-sign control.

    Not in the paper: *our* control (issue 20) separating "a perturbation along a gradient helps"
    from "any ±η perturbation of the same size helps"; η in the same units as ``adv_untargeted``.
    """

    Params = UntargetedParams

    def __init__(self, model, params: UntargetedParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        self.step = pixel_step(model, params.eta, params.eta_space)

    def training_step(self, images, labels, ctx):
        bits = torch.randint(0, 2, images.shape, generator=ctx.generator, device=images.device)
        noisy = (images + self.step * (2 * bits.to(images.dtype) - 1)).clamp(0, 1)
        return perturbed_ce(self, noisy, images, labels)


@dataclass
class TRADESParams:
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    beta: float = 6.0


@register_method("trades")
class TRADES(Method):
    """Zhang et al. (2019): CE(f(x), y) + β·KL(p(x) ‖ p(x')), x' from PGD on the same KL."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = TRADESParams

    def __init__(self, model, params: TRADESParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        self.attack = PGD(model, eps=params.eps, steps=params.steps, alpha=params.alpha, loss="kl")

    def training_step(self, images, labels, ctx):
        adv = self.attack(images, labels, generator=ctx.generator)
        logits = self.model(images)
        adv_logits = self.model(adv)
        kl = F.kl_div(F.log_softmax(adv_logits, 1), F.log_softmax(logits, 1), log_target=True,
                      reduction="batchmean")
        loss = F.cross_entropy(logits, labels) + self.params.beta * kl
        return {"loss": loss, "logits": logits, "logs": {"kl": kl.detach()}}
