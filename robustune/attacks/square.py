"""Square attack (Andriushchenko et al., ECCV 2020): score-based black-box random search with
square-shaped updates. It uses no gradient, so it is the AutoAttack component that exposes
gradient masking: if Square beats a white-box attack, the gradients are misleading.
"""

from __future__ import annotations

from torch import nn

from robustune.attacks.external import ExternalAttack, import_torchattacks
from robustune.attacks.registry import register_attack


@register_attack("square")
class Square(ExternalAttack):
    """Untargeted Square attack on the margin loss; AutoAttack "standard" uses 5000 queries.

    Args:
        n_queries: model queries per point and restart.
        restarts: restarts (each on the points not yet fooled).
        p_init: initial fraction of pixels changed per square (0.8).
        loss: ``"margin"`` or ``"ce"``.
        rescale_schedule: rescale the square-size schedule to ``n_queries`` (the schedule is
            written for 10,000 queries). AutoAttack "standard" uses ``False`` with 5000 queries.
    """

    name = "square"
    needs_grad = False

    def __init__(self, model: nn.Module, eps: float, norm: str = "Linf", n_queries: int = 5000,
                 restarts: int = 1, p_init: float = 0.8, loss: str = "margin",
                 rescale_schedule: bool = True, seed: int | None = 0) -> None:
        if loss not in ("margin", "ce"):
            raise ValueError(f"Square loss must be margin or ce, got {loss!r}")
        super().__init__(model, eps, norm=norm, seed=seed)
        self.n_queries, self.restarts, self.p_init = int(n_queries), int(restarts), float(p_init)
        self.loss_name, self.rescale_schedule = loss, bool(rescale_schedule)

    def build(self, seed: int, num_classes: int):
        ta = import_torchattacks()
        return ta.Square(self.model, norm=self.norm, eps=self.eps, n_queries=self.n_queries,
                         n_restarts=self.restarts, p_init=self.p_init, loss=self.loss_name,
                         resc_schedule=self.rescale_schedule, seed=seed, verbose=False)

    def __repr__(self) -> str:
        return f"Square(eps={self.eps:.5g}, norm={self.norm}, queries={self.n_queries})"
