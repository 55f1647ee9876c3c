"""Dynamic loss weighting of the natural and adversarial terms (ER-APT's second contribution).

The training loss is ``L = w_nat · L_nat + w_adv · L_adv``. FAP fixes ``(w_nat, w_adv) = (1, λ)``
with λ = 1.5; ER-APT adapts the weights, but the text we hold gives no formula, so the schemes below are
documented choices (docs/erapt.md). Every scheme also runs a *collapse detector*: FAP is known to
collapse to near-uniform predictions (natural CE ≈ ln C, adversarial KL → 0); when the mean natural
CE of the last ``collapse_window`` steps is within ``collapse_tol · ln C`` of ln C, the adversarial
weight is multiplied by ``collapse_factor`` (and the natural one raised by what it lost), a
warning is logged, and the detector waits one window before it may fire again.

All state lives in buffers, so it is saved with the method's checkpoint and restored on resume.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

SCHEMES = ("fixed", "dwa", "ratio")


@dataclass
class WeightingParams:
    """Options of :class:`LossWeighting` (defaults: FAP's λ; T = 0.5, our choice)."""

    scheme: str = "fixed"
    lam: float = 1.5  # FAP's fixed λ and the base adversarial weight of every scheme
    window: int = 20  # steps per running window (dwa)
    temperature: float = 0.5  # T of dwa (ours, measured: docs/erapt.md §3; DWA's paper uses 2)
    lam_min: float = 0.5  # ratio: λ ∈ [lam_min, lam_max]
    lam_max: float = 4.0
    ema: float = 0.9  # ratio: λ(t) = ema · λ(t−1) + (1 − ema) · clip(L_nat / L_adv)
    collapse_window: int = 20
    collapse_tol: float = 0.05  # relative distance of the mean natural CE to ln C
    collapse_factor: float = 0.5  # w_adv multiplier applied at each detection
    collapse_detection: bool = True


class LossWeighting(nn.Module):
    """Weights (w_nat, w_adv) per step; call :meth:`step` once per training step.

    Schemes, with base weights b = (1, λ):

    - ``fixed`` (FAP): w = b.
    - ``dwa`` (Dynamic Weight Average, Liu et al. 2019):
      w_k(t) = b_k · K · exp(r_k(t)/T) / Σ_j exp(r_j(t)/T), r_k(t) = L̄_k(t−1) / L̄_k(t−2),
      with K = 2 terms, T = ``temperature`` and L̄_k(t) the mean of loss k over the t-th completed
      window of ``window`` steps (before two windows are complete, r_k = 1 and w = b). The term
      whose loss falls more slowly gets more weight.
    - ``ratio``: w = (1, λ(t)), λ(t) = ema · λ(t−1) + (1 − ema) · clip(L_nat/L_adv, λ_min, λ_max),
      λ(0) = λ, losses detached: the adversarial term is scaled toward the natural term's size.

    Then the collapse detector scales w_adv by s (s ← s · collapse_factor at each detection) and
    adds (1 − s) · w_adv to w_nat, so the total weight is unchanged.

    Args:
        params: :class:`WeightingParams`.
        num_classes: C, for the collapse level ln C.
    """

    def __init__(self, params: WeightingParams | None = None, num_classes: int = 10) -> None:
        super().__init__()
        self.params = params or WeightingParams()
        if self.params.scheme not in SCHEMES:
            raise ValueError(f"unknown weighting scheme {self.params.scheme!r}; valid: {', '.join(SCHEMES)}")
        self.num_classes = num_classes
        p = self.params
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("window_sum", torch.zeros(2, dtype=torch.float64))  # dwa: current window
        # finite "empty" values + counts (a checkpoint must hold only finite floats: the engine refuses NaN)
        self.register_buffer("window_means", torch.zeros((2, 2), dtype=torch.float64))  # [t−2, t−1]
        self.register_buffer("windows", torch.zeros((), dtype=torch.long))  # completed dwa windows
        self.register_buffer("lam_ema", torch.tensor(float(p.lam), dtype=torch.float64))
        self.register_buffer("nat_history", torch.zeros((max(1, p.collapse_window),), dtype=torch.float64))
        self.register_buffer("nat_count", torch.zeros((), dtype=torch.long))  # natural CEs recorded
        self.register_buffer("adv_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("last_collapse", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("collapses", torch.zeros((), dtype=torch.long))

    @property
    def collapse_level(self) -> float:
        return math.log(self.num_classes)

    def base_weights(self) -> torch.Tensor:
        """(w_nat, w_adv) from the scheme alone, before the collapse adjustment."""
        p = self.params
        base = torch.tensor([1.0, p.lam], dtype=torch.float64, device=self.adv_scale.device)
        if p.scheme == "dwa":
            prev, last = self.window_means[0], self.window_means[1]
            ready = int(self.windows) >= 2 and bool((prev > 0).all())
            r = last / prev if ready else torch.ones_like(prev)
            return base * 2 * torch.softmax(r / p.temperature, 0)
        if p.scheme == "ratio":
            return torch.stack([base[0], self.lam_ema])
        return base

    def weights(self) -> torch.Tensor:
        """Current (w_nat, w_adv) (float64, 2) including the collapse adjustment."""
        w = self.base_weights()
        moved = (1 - self.adv_scale) * w[1]
        return torch.stack([w[0] + moved, w[1] - moved])

    def _record(self, nat: float, adv: float) -> None:
        p = self.params
        if p.scheme == "dwa":
            self.window_sum += torch.tensor([nat, adv], dtype=torch.float64, device=self.window_sum.device)
            if int(self.steps + 1) % max(1, p.window) == 0:
                self.window_means[0] = self.window_means[1].clone()
                self.window_means[1] = self.window_sum / max(1, p.window)
                self.window_sum.zero_()
                self.windows += 1
        elif p.scheme == "ratio":
            ratio = min(max(nat / max(adv, 1e-12), p.lam_min), p.lam_max)
            self.lam_ema.mul_(p.ema).add_((1 - p.ema) * ratio)

    def collapsed(self) -> bool:
        """True when the window is full and its mean natural CE is within tol·ln C of ln C."""
        hist = self.nat_history
        if int(self.nat_count) < hist.numel():
            return False
        level = self.collapse_level
        return abs(float(hist.mean()) - level) <= self.params.collapse_tol * level

    def _detect_collapse(self, nat: float) -> bool:
        p = self.params
        n = self.nat_history.numel()
        self.nat_history[int(self.steps) % n] = nat
        self.nat_count += 1
        cooling = int(self.last_collapse) >= 0 and int(self.steps) - int(self.last_collapse) < n
        if not p.collapse_detection or cooling or not self.collapsed():
            return False
        self.adv_scale.mul_(p.collapse_factor)
        self.last_collapse.fill_(int(self.steps))
        self.collapses += 1
        log.warning("training collapse: natural CE %.3f ≈ ln C = %.3f over %d steps; adversarial weight "
                    "scaled to %.3g of its value", float(self.nat_history.mean()), self.collapse_level, n,
                    float(self.adv_scale))
        return True

    def step(self, nat_loss: torch.Tensor | float, adv_loss: torch.Tensor | float) -> torch.Tensor:
        """Record this step's (detached) losses and return the weights (w_nat, w_adv) to use now.

        ``dwa`` only uses completed windows, so the current step affects later steps; ``ratio``
        includes the current ratio in its EMA; the collapse check includes the current step.
        """
        nat, adv = float(nat_loss), float(adv_loss)
        with torch.no_grad():
            self._record(nat, adv)
            self._detect_collapse(nat)
            self.steps += 1
            return self.weights().float()

    def logs(self) -> dict[str, float]:
        """Values to log every step."""
        w = self.weights()
        return {"w_nat": float(w[0]), "w_adv": float(w[1]), "collapses": float(self.collapses)}
