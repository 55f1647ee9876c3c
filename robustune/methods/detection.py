"""Detection methods on the same engine: ``det_finetune``, ``det_adv``, ``gfn_det`` (GFN paper Sec. 4.3).

A detection step gets ``images`` (a list of [0,1] CHW tensors) and ``labels`` (a list of target
dicts, :mod:`robustune.data.detection`) and returns ``{"loss", "logs", "n"}`` (no logits: the
engine then reports no training accuracy).

- ``det_finetune``: torchvision's detection loss (RPN objectness + box, ROI classification + box).
- ``det_adv``: the paper's "Adv." transferred to detection: one untargeted sign step of size η on
  the detection loss, x' = clip(x + η·std·sign(∇_x L_det)), then the detection loss on x'.
- ``gfn_det``: one targeted sign step per image that pushes the ROI head's class scores of the
  proposals matched to ground truth toward (a) a neighbour class p ~ Uniform(N_k(c)) of each
  object's class c and (b) the background class, x' = clip(x − η·std·sign(∇_x L_target)); then the
  detection loss on x' whose ROI classification term uses GFN's inter-class distance weighting
  (:mod:`robustune.losses.gfn`) on the foreground ROIs, with the same sampled p.

The paper says only "gradient perturbations ... targeting the background class" (Sec. 4.3);
everything else here is *our* reading, each an option of :class:`GFNDetParams` with the default
named in its comment: one neighbour per object (not per image), L_target = w_nbr·CE(z, p) +
w_bg·CE(z, background) averaged over foreground ROIs, class similarity from the backbone's
features of ground-truth boxes (RoIAlign on the trunk's last map) at the start, RPN / ROI
sampling as in training, BatchNorm / dropout / drop-path frozen while taking input gradients.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from robustune.gfn.perturbation import pixel_step
from robustune.gfn.similarity import clamp_k, cosine_matrix, neighbor_ranks, neighbor_table
from robustune.losses.gfn import gfn_loss
from robustune.methods.base import Method, SetupContext, register_method
from robustune.methods.gfn import SimilarityRefresh

log = logging.getLogger(__name__)
_FROZEN = (nn.modules.batchnorm._BatchNorm, nn.Dropout)


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Training mode (torchvision computes losses only then) with BN / dropout / drop-path frozen."""
    flags = [(m, m.training) for m in model.modules()]
    model.train()
    for m in model.modules():
        if isinstance(m, _FROZEN) or type(m).__name__ == "DropPath":
            m.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _step_size(model: nn.Module, eta: float, eta_space: str) -> torch.Tensor:
    step = pixel_step(model, eta, eta_space)
    return torch.as_tensor(step).reshape(-1, 1, 1) if torch.is_tensor(step) else torch.tensor(step)


def sign_step(images: list[torch.Tensor], grads: tuple[torch.Tensor, ...], step: torch.Tensor,
              direction: float) -> list[torch.Tensor]:
    """x + direction·step·sign(g), clipped to [0,1], per image."""
    return [(x + direction * step.to(x) * g.sign()).clamp_(0, 1).detach() for x, g in zip(images, grads)]


@dataclass
class RCNNPass:
    """The pieces of one Faster R-CNN training forward that GFN-det needs."""

    rpn_losses: dict[str, torch.Tensor]
    class_logits: torch.Tensor  # (R, C + 1), column 0 = background
    box_regression: torch.Tensor
    labels: torch.Tensor  # (R,) internal labels (0 = background)
    matched: list[torch.Tensor]  # per image, the matched ground-truth index of each sampled ROI
    regression_targets: torch.Tensor
    counts: list[int]  # sampled ROIs per image


def rcnn_pass(detector: nn.Module, images: list[torch.Tensor], targets: list[dict[str, Any]]) -> RCNNPass:
    """torchvision's Faster R-CNN training forward, opened up to expose the sampled ROIs' logits."""
    tv = detector.detector
    if not hasattr(tv, "roi_heads"):
        raise ValueError(f"gfn_det needs a Faster R-CNN (an ROI head); this detector is {detector.arch!r}")
    internal = detector.to_internal(targets)
    batch, internal = tv.transform(list(images), internal)
    features = tv.backbone(batch.tensors)
    proposals, rpn_losses = tv.rpn(batch, features, internal)
    heads = tv.roi_heads
    proposals, matched, labels, reg_targets = heads.select_training_samples(proposals, internal)
    feats = heads.box_head(heads.box_roi_pool(features, proposals, batch.image_sizes))
    logits, box_regression = heads.box_predictor(feats)
    return RCNNPass(rpn_losses, logits, box_regression, torch.cat(labels), matched,
                    torch.cat(reg_targets), [len(p) for p in proposals])


class DetectionMethod(Method):
    """Base of detection methods: the eval model is the detector itself."""

    def cost_module(self) -> nn.Module:
        """The detector's backbone: every image pass of a step (the whole detector, or gfn_det's
        opened-up R-CNN pass) runs the batched images through it once."""
        backbone = getattr(getattr(self.model, "detector", None), "backbone", None)
        return backbone if backbone is not None else self.model

    def output(self, loss: torch.Tensor, images: list, logs: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"loss": loss, "n": len(images), "logs": {k: v.detach() for k, v in logs.items()}}


@register_method("det_finetune")
class DetFinetune(DetectionMethod):
    """Plain detector fine-tuning: the sum of torchvision's detection losses."""

    def training_step(self, images, labels, ctx):
        losses = self.model(images, labels)
        return self.output(sum(losses.values()), images, losses)


@dataclass
class DetAdvParams:
    eta: float = 0.01  # sign step, in eta_space units (the classifier ``adv_untargeted``'s default)
    eta_space: str = "normalized"  # normalized (model-input units, as GFN's η) | pixel
    include_clean: bool = False  # add the loss on x (off: train on x' alone, like adv_untargeted)


@register_method("det_adv")
class DetAdv(DetectionMethod):
    """One untargeted sign step of size η on the detection loss, then the detection loss on x'."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = DetAdvParams

    def perturb(self, images, labels) -> list[torch.Tensor]:
        xs = [x.detach().clone().requires_grad_(True) for x in images]
        with loss_mode(self.model):
            loss = sum(self.model(xs, labels).values())
        grads = torch.autograd.grad(loss, xs)
        return sign_step(images, grads, _step_size(self.model, self.params.eta, self.params.eta_space), +1.0)

    def training_step(self, images, labels, ctx):
        losses = self.model(self.perturb(images, labels), labels)
        loss = sum(losses.values())
        if self.params.include_clean:
            loss = loss + sum(self.model(images, labels).values())
        return self.output(loss, images, losses)


@dataclass
class GFNDetParams:
    eta: float = 0.01  # targeted sign step, eta_space units (GFN's default η)
    eta_space: str = "normalized"  # normalized | pixel
    k: int = 20  # neighbours N_k(c), clamped to C - 1
    alpha: float = 0.5  # w = alpha^rank of the distance weighting
    loss: str = "neighbor_margin"  # ROI classification reading (robustune.losses.gfn; gfn's default, ours)
    lam: float = 1.0  # λ of neighbor_suppression
    beta: float = 10.0  # β of neighbor_margin / predicted_rank (gfn's classifier default; not screened for detection)
    margin: float = 1.0  # m of neighbor_additive
    neighbor_weight: float = 1.0  # weight of CE(z, p) in the perturbation objective (0: background only)
    background_weight: float = 1.0  # weight of CE(z, background) in it (0: neighbour only)
    similarity_source: str = "features"  # features (GT-box features of the trunk) | head_weights (box classifier rows)
    max_per_class: int = 100  # GT objects per class for the feature similarity
    similarity_max_images: int | None = None  # stop scanning the training set after this many images (None: no cap)
    refresh_every: int = 0  # 0: similarity once at the start; N: recompute every N epochs
    include_clean: bool = False


@register_method("gfn_det")
class GFNDet(SimilarityRefresh, DetectionMethod):
    """GFN for detection: neighbour- and background-targeted step on the ROI head, weighted ROI loss."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = GFNDetParams

    def __init__(self, model, params: GFNDetParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        gfn_loss(params.loss)
        if params.similarity_source not in ("features", "head_weights"):
            raise ValueError(f"unknown similarity_source {params.similarity_source!r}; valid: features, head_weights")
        if not 0 < params.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {params.alpha}")
        self.k = clamp_k(params.k, num_classes)
        self.register_buffer("similarity", torch.zeros(num_classes, num_classes))
        self.register_buffer("ranks", torch.zeros(num_classes, num_classes, dtype=torch.long))

    # --- class similarity -------------------------------------------------------------------
    def compute_similarity(self, ctx: SetupContext) -> None:
        if self.params.similarity_source == "head_weights":
            w = self.model.detector.roi_heads.box_predictor.cls_score.weight[1:].detach()
            sim = cosine_matrix(w)
        else:
            from robustune.methods.detection_similarity import box_feature_embeddings

            sim = cosine_matrix(box_feature_embeddings(self.model, ctx.train_set, self.num_classes,
                                                       self.params.max_per_class, ctx.device,
                                                       self.params.similarity_max_images))
        self.similarity.copy_(sim.to(self.similarity.device))
        self.ranks.copy_(neighbor_ranks(sim).to(self.ranks.device))

    # --- the step ------------------------------------------------------------------------------
    def sample_neighbors(self, labels: list[dict[str, Any]], generator: torch.Generator) -> list[torch.Tensor]:
        """p ~ Uniform(N_k(c)) for every ground-truth object (after the crowd filter), internal labels."""
        table = neighbor_table(self.ranks, self.k)
        out = []
        for t in labels:
            c = t["labels"][t["iscrowd"] == 0] if "iscrowd" in t else t["labels"]
            pick = torch.randint(0, self.k, (len(c),), generator=generator, device=generator.device)
            out.append(table[c.to(table.device), pick.to(table.device)].to(c.device) + 1)
        return out

    @staticmethod
    def roi_targets(rp: RCNNPass, neighbors: list[torch.Tensor]) -> torch.Tensor:
        """The sampled neighbour (internal label) of each ROI's matched object; 0 for background ROIs."""
        per_image = [nb[m.clamp(min=0)] if len(nb) else torch.zeros_like(m) for nb, m in zip(neighbors, rp.matched)]
        return torch.where(rp.labels > 0, torch.cat(per_image), torch.zeros_like(rp.labels))

    def perturb(self, images, labels, neighbors) -> list[torch.Tensor]:
        p = self.params
        xs = [x.detach().clone().requires_grad_(True) for x in images]
        with loss_mode(self.model):
            rp = rcnn_pass(self.model, xs, labels)
        fg = rp.labels > 0
        if not bool(fg.any()):
            return [x.detach() for x in images]
        z = rp.class_logits[fg]
        loss = (p.neighbor_weight * F.cross_entropy(z, self.roi_targets(rp, neighbors)[fg])
                + p.background_weight * F.cross_entropy(z, torch.zeros_like(rp.labels[fg])))
        grads = torch.autograd.grad(loss, xs, allow_unused=True)
        grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads))
        return sign_step(images, grads, _step_size(self.model, p.eta, p.eta_space), -1.0)

    def roi_class_loss(self, rp: RCNNPass, neighbors: list[torch.Tensor]) -> torch.Tensor:
        """GFN-weighted CE on foreground ROIs (labels/targets shifted by the background column), CE on the rest."""
        p = self.params
        fg = rp.labels > 0
        n = self.num_classes + 1
        ranks = torch.zeros(n, n, dtype=torch.long, device=self.ranks.device)
        ranks[1:, 1:] = self.ranks  # background has rank 0 everywhere: never a neighbour, never weighted
        total = F.cross_entropy(rp.class_logits[~fg], rp.labels[~fg], reduction="sum") if bool((~fg).any()) else 0.0
        if bool(fg.any()):
            fg_loss = gfn_loss(p.loss)(rp.class_logits[fg], rp.labels[fg], self.roi_targets(rp, neighbors)[fg],
                                       ranks, alpha=p.alpha, k=self.k, lam=p.lam, beta=p.beta, margin=p.margin)
            total = total + fg_loss * int(fg.sum())
        return total / max(1, len(rp.labels))

    def training_step(self, images, labels, ctx):
        from torchvision.models.detection.roi_heads import fastrcnn_loss

        neighbors = self.sample_neighbors(labels, ctx.generator)
        adv = self.perturb(images, labels, neighbors)
        rp = rcnn_pass(self.model, adv, labels)
        _, box_loss = fastrcnn_loss(rp.class_logits, rp.box_regression, [rp.labels], [rp.regression_targets])
        cls_loss = self.roi_class_loss(rp, neighbors)
        losses = {"loss_classifier": cls_loss, "loss_box_reg": box_loss, **rp.rpn_losses}
        loss = sum(losses.values())
        if self.params.include_clean:
            loss = loss + sum(self.model(images, labels).values())
        return self.output(loss, images, losses)
