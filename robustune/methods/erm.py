"""Plain fine-tuning (empirical risk minimisation) and Madry PGD adversarial training."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from robustune.attacks import PGD
from robustune.methods.base import Method, register_method


@register_method("erm")
class ERM(Method):
    """Cross-entropy on clean images."""

    def training_step(self, images, labels, ctx):
        logits = self.model(images)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits, "logs": {}}


@dataclass
class PGDATParams:
    eps: float = 8 / 255
    alpha: float = 2 / 255
    steps: int = 10
    norm: str = "Linf"
    loss: str = "ce"


@register_method("pgd_at")
class PGDAT(Method):
    """Madry et al. (2018): minimise CE on PGD adversarial examples (random start, eval-mode attack)."""
    has_inner_attack = True  # its step runs an attack (fp16 refused, robustune.precision)

    Params = PGDATParams

    def __init__(self, model, params: PGDATParams, num_classes: int) -> None:
        super().__init__(model, params, num_classes)
        self.attack = PGD(model, eps=params.eps, steps=params.steps, alpha=params.alpha,
                          norm=params.norm, loss=params.loss)

    def training_step(self, images, labels, ctx):
        adv = self.attack(images, labels, generator=ctx.generator)
        logits = self.model(adv)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits, "logs": {}}
