"""Projected gradient descent (Madry et al. 2018), L∞ or L2, with restarts and pluggable loss."""

from __future__ import annotations

import torch

from robustune.attacks.base import Attack, random_start
from robustune.attacks.registry import register_attack


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "Linf":
        return grad.sign()
    n = grad.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
    return grad / n


def input_gradient(model, x: torch.Tensor, objective) -> tuple[torch.Tensor, torch.Tensor]:
    """∇_x of ``objective(logits)`` summed over the batch, with no parameter gradient accumulated."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        value = objective(logits)
        (grad,) = torch.autograd.grad(value.sum(), x)
    return grad.detach(), value.detach()


@register_attack("pgd")
class PGD(Attack):
    """PGD-k: ``steps`` signed (L∞) or normalised (L2) ascent steps of size ``alpha``.

    Args:
        steps: number of iterations k.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.).
        random_start: uniform start in the ball (else start at x).
        restarts: independent runs; per point the first successful one is kept (else the last).

    After a call, ``last_direction`` holds the ascent direction of the last step of the last run
    (sign of the input gradient for L∞; None with 0 steps): the evolution attack's ``gradient``
    mutation reuses it without another backward.
    """

    name = "pgd"

    def __init__(self, model, eps: float, steps: int = 10, alpha: float | None = None,
                 random_start: bool = True, restarts: int = 1, **kwargs) -> None:
        super().__init__(model, eps, **kwargs)
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        self.steps = steps
        self.alpha = alpha if alpha is not None else 2.5 * self.eps / max(steps, 1)
        self.random_start = random_start
        self.restarts = max(1, restarts)
        self.last_direction: torch.Tensor | None = None

    def _run(self, x, y, gen, clean_logits):
        adv = random_start(x, self.eps, self.norm, gen) if self.random_start else x.clone()
        objective = lambda logits: self.objective(logits, y, clean_logits)  # noqa: E731
        self.last_direction = None
        for _ in range(self.steps):
            grad, _ = input_gradient(self.model, adv, objective)
            self.last_direction = ascent_direction(grad, self.norm)
            adv = self.project(adv + self.alpha * self.last_direction, x)
        return adv

    def _fooled(self, adv, y):
        with torch.no_grad():
            pred = self.model(adv).argmax(1)
        return pred == y if self.targeted else pred != y

    def perturb(self, x, y, generator):
        clean_logits = None
        if getattr(self.loss_fn, "__name__", "") == "kl_loss":
            with torch.no_grad():
                clean_logits = self.model(x)
        best = self._run(x, y, generator, clean_logits)
        if self.restarts == 1:
            return best
        done = self._fooled(best, y)
        for _ in range(self.restarts - 1):
            if bool(done.all()):
                break
            adv = self._run(x, y, generator, clean_logits)
            fooled = self._fooled(adv, y)
            take = ~done & fooled
            best = torch.where(take.view(-1, 1, 1, 1), adv, best)
            done |= fooled
        return best


@register_attack("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps from x."""

    name = "fgsm"

    def perturb(self, x, y, generator):
        grad, _ = input_gradient(self.model, x, lambda logits: self.objective(logits, y))
        return self.project(x + self.eps * ascent_direction(grad, self.norm), x)
