"""FAB (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples with a fast adaptive
boundary attack"): steps towards the linearised decision boundary, biased back to the input.
FAB-T, the targeted version over the top wrong classes, is the third AutoAttack component.
"""

from __future__ import annotations

from torch import nn

from robustune.attacks.external import ExternalAttack, import_torchattacks
from robustune.attacks.registry import register_attack


@register_attack("fab")
class FAB(ExternalAttack):
    """FAB with AutoAttack's settings: 100 iterations, α_max = 0.1, η = 1.05, β = 0.9.

    A point counts as fooled only if the minimal adversarial example found is within ``eps``;
    otherwise the clean input is returned for it.

    Args:
        steps: iterations per restart (and per target for FAB-T).
        restarts: restarts (the first from the input, later ones from random points).
        multi_targeted: FAB-T: one run per target among the top ``n_target_classes`` wrong classes.
        n_target_classes: targets for FAB-T (capped at ``num_classes - 1``; ``None`` = all).
    """

    name = "fab"

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf", steps: int = 100,
                 restarts: int = 1, multi_targeted: bool = False, n_target_classes: int | None = 9,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9,
                 seed: int | None = 0) -> None:
        super().__init__(model, eps, norm=norm, seed=seed)
        self.steps, self.restarts = int(steps), int(restarts)
        self.multi_targeted, self.n_target_classes = multi_targeted, n_target_classes
        self.alpha_max, self.eta, self.beta = alpha_max, eta, beta

    def build(self, seed: int, num_classes: int):
        ta = import_torchattacks()
        atk = ta.FAB(self.model, norm=self.norm, eps=self.eps, steps=self.steps,
                     n_restarts=self.restarts, alpha_max=self.alpha_max, eta=self.eta,
                     beta=self.beta, verbose=False, seed=seed, multi_targeted=self.multi_targeted,
                     n_classes=num_classes)
        n = num_classes - 1 if self.n_target_classes is None else int(self.n_target_classes)
        atk.n_target_classes = max(1, min(n, num_classes - 1))
        return atk

    def __repr__(self) -> str:
        kind = "FAB-T" if self.multi_targeted else "FAB"
        return f"{kind}(eps={self.eps:.5g}, norm={self.norm}, steps={self.steps})"


@register_attack("fab-t")
class FABT(FAB):
    """FAB-T: multi-targeted FAB over the top 9 wrong classes (AutoAttack "standard")."""

    def __init__(self, model: nn.Module, eps: float, **kwargs) -> None:
        super().__init__(model, eps, **{"multi_targeted": True, **kwargs})
