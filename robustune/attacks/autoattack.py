"""AutoAttack (Croce & Hein, ICML 2020) as a composition of the four parameter-free components.

"standard" (Linf/L2): APGD-CE (100 iterations, 1 restart) → APGD-T (targeted DLR, 9 targets ×
100 iterations) → FAB-T (9 targets, 100 iterations) → Square (5000 queries). Each component runs
only on the points every earlier component failed on; a point is robust only if all of them fail
(worst case per point). "rand" (randomised defences): APGD-CE → APGD-DLR, each with 20-sample EOT.

This module composes on one batch. The dataset-level run — resumable from a state file saved
after each component, with per-point results — is
:func:`robustune.eval.autoattack_run.autoattack_outcomes`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustune.attacks.apgd import APGD
from robustune.attacks.apgd_t import APGDT
from robustune.attacks.base import Attack
from robustune.attacks.external import derive_seed
from robustune.attacks.fab import FAB
from robustune.attacks.registry import register_attack
from robustune.attacks.square import Square
from robustune.utils import step_generator

# The exact settings of fra31/auto-attack's version="standard" / "rand" (autoattack.py).
STANDARD_SETTINGS: dict[str, dict[str, Any]] = {
    "apgd-ce": {"cls": APGD, "loss": "ce", "steps": 100, "restarts": 1},
    "apgd-t": {"cls": APGDT, "steps": 100, "n_target_classes": 9, "restarts": 1},
    "fab-t": {"cls": FAB, "multi_targeted": True, "steps": 100, "n_target_classes": 9, "restarts": 1},
    "square": {"cls": Square, "n_queries": 5000, "restarts": 1, "p_init": 0.8, "rescale_schedule": False},
}
RAND_SETTINGS: dict[str, dict[str, Any]] = {
    "apgd-ce": {"cls": APGD, "loss": "ce", "steps": 100, "restarts": 1, "eot_iter": 20},
    "apgd-dlr": {"cls": APGD, "loss": "dlr", "steps": 100, "restarts": 1, "eot_iter": 20},
}
VERSIONS = {"standard": STANDARD_SETTINGS, "rand": RAND_SETTINGS}


def component_settings(version: str, overrides: dict[str, dict[str, Any]] | None = None
                       ) -> dict[str, dict[str, Any]]:
    """Name → keyword arguments of each component of ``version``, with optional overrides.

    Overrides exist for fast tests and benchmarks only; results computed with them are not
    AutoAttack numbers, and the suite records them in the cell details.
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown AutoAttack version {version!r}; valid: {', '.join(VERSIONS)}")
    settings = {k: dict(v) for k, v in VERSIONS[version].items()}
    for name, extra in (overrides or {}).items():
        if name not in settings:
            raise ValueError(f"no component {name!r} in AutoAttack {version!r}; valid: {', '.join(settings)}")
        settings[name].update(extra)
    return settings


@register_attack("autoattack")
class AutoAttack(Attack):
    """AutoAttack on a batch: components in order, each on the points still robust.

    Args:
        model: any module mapping [0,1] images to logits.
        eps: radius of the threat model.
        norm: ``"Linf"`` or ``"L2"``.
        version: ``"standard"`` or ``"rand"``.
        seed: seed used when no generator is passed to the call.
        overrides: per-component keyword overrides (tests and benchmarks only).
    """

    name = "autoattack"

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf", version: str = "standard",
                 seed: int | None = 0, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(model, eps, norm=norm, seed=seed)
        self.version = version
        self.settings = component_settings(version, overrides)
        self.components: list[tuple[str, Attack]] = []
        for name, kw in self.settings.items():
            kw = dict(kw)
            cls = kw.pop("cls")
            self.components.append((name, cls(model, eps, norm=norm, seed=seed, **kw)))

    @property
    def component_names(self) -> list[str]:
        return [name for name, _ in self.components]

    def describe(self) -> dict[str, Any]:
        """The settings as data (recorded beside every result)."""
        return {"version": self.version, "norm": self.norm, "eps": self.eps,
                "components": {n: {k: v for k, v in kw.items() if k != "cls"}
                               for n, kw in self.settings.items()}}

    def fooled(self, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x_adv).argmax(1) != y

    def run_component(self, index: int, x: torch.Tensor, y: torch.Tensor,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(adversarial images, fooled mask) of component ``index`` on (x, y)."""
        _, attack = self.components[index]
        adv = attack(x, y, generator=generator)
        return adv, self.fooled(adv, y)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        base = derive_seed(generator, self.seed)
        adv = x.clone()
        robust = ~self.fooled(x, y)
        for k in range(len(self.components)):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            a, fooled = self.run_component(k, x[idx], y[idx], step_generator(base, k, device=x.device))
            adv[idx[fooled]] = a[fooled]
            robust[idx[fooled]] = False
        return adv

    def __repr__(self) -> str:
        return f"AutoAttack(version={self.version}, eps={self.eps:.5g}, norm={self.norm})"


@register_attack("autoattack-rand")
class AutoAttackRand(AutoAttack):
    """AutoAttack ``rand`` (APGD-CE, APGD-DLR with EOT over 20 samples) for randomised defences."""

    def __init__(self, model: nn.Module, eps: float, **kwargs) -> None:
        super().__init__(model, eps, **{"version": "rand", **kwargs})
