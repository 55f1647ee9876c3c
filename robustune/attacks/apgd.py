"""APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Alg. 1): PGD with momentum and a step size halved at
checkpoints where the objective stops improving. The inner loop is torchattacks' port of the
authors' code; see :mod:`robustune.attacks.external`.
"""

from __future__ import annotations

from torch import nn

from robustune.attacks.external import ExternalAttack, import_torchattacks
from robustune.attacks.registry import register_attack

APGD_LOSSES = ("ce", "dlr")


@register_attack("apgd")
class APGD(ExternalAttack):
    """Untargeted APGD with the cross-entropy (APGD-CE) or DLR (APGD-DLR, Eq. 6) loss.

    Defaults are AutoAttack "standard": 100 iterations, 1 restart, ρ = 0.75, no EOT.

    Args:
        steps: iterations per restart.
        restarts: random restarts, each run on the points not yet fooled.
        loss: ``"ce"`` or ``"dlr"``.
        eot_iter: gradients averaged per step (Expectation over Transformation; 20 in the
            AutoAttack ``rand`` version for randomised defences).
        rho: step-size decay threshold.
    """

    name = "apgd"

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf", steps: int = 100,
                 restarts: int = 1, loss: str = "ce", eot_iter: int = 1, rho: float = 0.75,
                 seed: int | None = 0) -> None:
        if loss not in APGD_LOSSES:
            raise ValueError(f"APGD loss must be one of {', '.join(APGD_LOSSES)}, got {loss!r}")
        super().__init__(model, eps, norm=norm, loss=loss, seed=seed)
        self.steps, self.restarts, self.loss_name = int(steps), int(restarts), loss
        self.eot_iter, self.rho = int(eot_iter), float(rho)

    def build(self, seed: int, num_classes: int):
        ta = import_torchattacks()
        return ta.APGD(self.model, norm=self.norm, eps=self.eps, steps=self.steps,
                       n_restarts=self.restarts, seed=seed, loss=self.loss_name,
                       eot_iter=self.eot_iter, rho=self.rho, verbose=False)

    def __repr__(self) -> str:
        return f"APGD-{self.loss_name.upper()}(eps={self.eps:.5g}, norm={self.norm}, steps={self.steps})"


@register_attack("apgd-ce")
class APGDCE(APGD):
    """APGD-CE, the first AutoAttack component."""

    def __init__(self, model: nn.Module, eps: float, **kwargs) -> None:
        super().__init__(model, eps, **{"loss": "ce", **kwargs})


@register_attack("apgd-dlr")
class APGDDLR(APGD):
    """APGD with the untargeted DLR loss (AutoAttack ``rand`` and ``plus``)."""

    def __init__(self, model: nn.Module, eps: float, **kwargs) -> None:
        super().__init__(model, eps, **{"loss": "dlr", **kwargs})
