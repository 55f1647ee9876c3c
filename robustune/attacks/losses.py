"""Per-sample attack losses (higher = more adversarial), pluggable by name.

Signature: ``loss(logits, labels, clean_logits=None) -> (N,)``. Targeted attacks pass the target
labels and *minimise* the loss (the base class flips the sign).
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from robustune.registry import Registry


class AttackLoss(Protocol):
    def __call__(self, logits: torch.Tensor, labels: torch.Tensor,
                 clean_logits: torch.Tensor | None = None) -> torch.Tensor: ...


ATTACK_LOSSES: Registry[Callable[..., torch.Tensor]] = Registry("attack loss")


@ATTACK_LOSSES.register("ce")
def ce_loss(logits, labels, clean_logits=None):
    return F.cross_entropy(logits, labels, reduction="none")


@ATTACK_LOSSES.register("cw")
def cw_margin_loss(logits, labels, clean_logits=None):
    """Carlini-Wagner margin: max_{j≠y} z_j − z_y."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


@ATTACK_LOSSES.register("dlr")
def dlr_loss(logits, labels, clean_logits=None):
    """Difference of logits ratio (Croce & Hein 2020), untargeted; needs ≥ 3 classes."""
    srt, _ = logits.sort(dim=1)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    onehot = F.one_hot(labels, logits.shape[1]).bool()
    other = logits.masked_fill(onehot, float("-inf")).amax(1)
    return -(true - other) / (srt[:, -1] - srt[:, -3] + 1e-12)


@ATTACK_LOSSES.register("kl")
def kl_loss(logits, labels, clean_logits=None):
    """KL(p(x) ‖ p(x+δ)) per sample (TRADES / FAP inner loss); labels unused."""
    if clean_logits is None:
        raise ValueError("the kl attack loss needs clean_logits")
    p_clean = F.log_softmax(clean_logits, dim=1)
    p_adv = F.log_softmax(logits, dim=1)
    return F.kl_div(p_adv, p_clean, log_target=True, reduction="none").sum(1)


def get_attack_loss(name_or_fn: str | Callable) -> Callable:
    return ATTACK_LOSSES.get(name_or_fn) if isinstance(name_or_fn, str) else name_or_fn
