"""FAP's loss (Zhou et al., "Few-Shot Adversarial Prompt Learning on Vision-Language Models",
NeurIPS 2024; spec ``erapt.md`` §2): the training objective of the ``fap`` method and, per sample,
ER-APT's fitness."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from robustune.attacks.losses import kl_loss


class FAPLoss(NamedTuple):
    loss: torch.Tensor
    natural: torch.Tensor
    adversarial: torch.Tensor


def fap_sample_terms(logits_clean: torch.Tensor, logits_adv: torch.Tensor, feat_clean: torch.Tensor,
                     feat_adv: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(p(x) ‖ p(x+δ)) · (1 + cos(f_img(x), f_img(x+δ)))`` (FAP, spec §2), shape (N,)."""
    kl = kl_loss(logits_adv, None, clean_logits=logits_clean)
    return kl * (1 + F.cosine_similarity(feat_clean, feat_adv, dim=-1))


def fap_loss(logits_clean: torch.Tensor, logits_adv: torch.Tensor, feat_clean: torch.Tensor,
             feat_adv: torch.Tensor, labels: torch.Tensor, lam: float = 1.5) -> FAPLoss:
    """FAP's objective ``L = CE(logits(x), y) + λ · mean_i[KL(p(x_i) ‖ p(x_i+δ_i)) · (1 + cos_i)]``.

    Zhou et al., "Few-Shot Adversarial Prompt Learning on Vision-Language Models" (NeurIPS 2024),
    as verified in their code (spec ``erapt.md`` §2). Gradients flow through both branches.
    """
    natural = F.cross_entropy(logits_clean, labels)
    adversarial = fap_sample_terms(logits_clean, logits_adv, feat_clean, feat_adv).mean()
    return FAPLoss(natural + lam * adversarial, natural, adversarial)


__all__ = ["FAPLoss", "fap_loss", "fap_sample_terms"]
