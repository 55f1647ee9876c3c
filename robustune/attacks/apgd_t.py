"""APGD-T (Croce & Hein, ICML 2020, Sec. 5): APGD on the targeted DLR loss (Eq. 7), run once
per target class, the targets being the top-scoring wrong classes of the clean input.
"""

from __future__ import annotations

from torch import nn

from robustune.attacks.external import ExternalAttack, import_torchattacks
from robustune.attacks.registry import register_attack


@register_attack("apgd-t")
class APGDT(ExternalAttack):
    """Multi-targeted APGD with the targeted DLR loss.

    Defaults are AutoAttack "standard": 9 target classes × 100 iterations, 1 restart each,
    ρ = 0.75. Each target runs only on points not yet fooled. Needs ≥ 4 classes (the targeted
    DLR denominator uses the 4th largest logit).

    Args:
        steps: iterations per target and restart.
        n_target_classes: number of targets (capped at ``num_classes - 1``); ``None`` = all.
        restarts: restarts per target.
        eot_iter: gradients averaged per step.
        rho: step-size decay threshold.
    """

    name = "apgd-t"

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf", steps: int = 100,
                 n_target_classes: int | None = 9, restarts: int = 1, eot_iter: int = 1,
                 rho: float = 0.75, seed: int | None = 0) -> None:
        super().__init__(model, eps, norm=norm, loss="dlr", seed=seed)
        self.steps, self.restarts = int(steps), int(restarts)
        self.n_target_classes = n_target_classes
        self.eot_iter, self.rho = int(eot_iter), float(rho)

    def targets_for(self, num_classes: int) -> int:
        if num_classes < 4:
            raise ValueError(f"APGD-T needs at least 4 classes (targeted DLR loss), got {num_classes}")
        n = num_classes - 1 if self.n_target_classes is None else int(self.n_target_classes)
        return max(1, min(n, num_classes - 1))

    def build(self, seed: int, num_classes: int):
        ta = import_torchattacks()
        atk = ta.APGDT(self.model, norm=self.norm, eps=self.eps, steps=self.steps,
                       n_restarts=self.restarts, seed=seed, eot_iter=self.eot_iter, rho=self.rho,
                       verbose=False, n_classes=num_classes)
        atk.n_target_classes = self.targets_for(num_classes)  # torchattacks' default is n-1
        return atk

    def __repr__(self) -> str:
        return (f"APGD-T(eps={self.eps:.5g}, norm={self.norm}, steps={self.steps}, "
                f"targets={self.n_target_classes})")
