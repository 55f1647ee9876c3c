"""The attack base class: owns eval mode and its restore, projection, random start and targets.

An attack is called as ``adv = attack(images, labels)`` with images in [0,1]; the returned images
are within ``eps`` of the inputs (L∞ or L2) and in [0,1]. Attacks never see mean/std.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

from robustune.attacks.losses import get_attack_loss


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore each submodule's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(p=2, dim=1)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor,
            norm: str = "Linf") -> torch.Tensor:
    """Project ``x_adv`` onto the ``eps``-ball around ``x`` and onto [0,1].

    For L∞, ``eps`` may be a tensor broadcastable to ``x`` (e.g. per channel, (1, C, 1, 1)).
    """
    delta = x_adv - x
    if norm == "Linf":
        delta = torch.clamp(delta, -eps, eps) if torch.is_tensor(eps) else delta.clamp(-eps, eps)
    elif norm == "L2":
        n = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        delta = delta * (eps / n).clamp(max=1.0)
    else:
        raise ValueError(f"unknown norm {norm!r}; valid: Linf, L2")
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    if norm == "Linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return project(x + eps * noise, x, eps, norm)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    n = noise.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
    r = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype).view_as(n)
    return project(x + eps * r * noise / n.clamp_min(1e-12), x, eps, norm)


class Attack:
    """Base class. Subclasses implement :meth:`perturb` on tensors already in eval mode.

    Args:
        model: any module mapping [0,1] images to logits.
        eps: radius of the threat model in pixel units (e.g. 8/255).
        norm: ``"Linf"`` or ``"L2"``.
        loss: an attack loss name (``ce``, ``cw``, ``dlr``, ``kl``) or callable, see
            :mod:`robustune.attacks.losses`.
        targeted: if true, ``labels`` passed to the call are target classes to reach.
        seed: seed of the attack's own generator (random starts, restarts).
        use_eval_mode: run the model in eval mode during the attack (restored afterwards).

    ``eps`` may also be a tensor broadcastable to the images (per-channel L∞ radius, e.g. a step
    defined in normalised-input units as η·std).
    """

    name = "attack"

    def __init__(self, model: nn.Module, eps: float | torch.Tensor, norm: str = "Linf",
                 loss: str | Callable = "ce", targeted: bool = False, seed: int | None = 0,
                 use_eval_mode: bool = True) -> None:
        if bool((torch.as_tensor(eps) < 0).any()):
            raise ValueError(f"eps must be ≥ 0, got {eps}")
        if norm not in ("Linf", "L2"):
            raise ValueError(f"unknown norm {norm!r}; valid: Linf, L2")
        if torch.is_tensor(eps) and norm != "Linf":
            raise ValueError("a per-channel (tensor) eps is only defined for the Linf norm")
        self.model = model
        self.eps = eps if torch.is_tensor(eps) else float(eps)
        self.use_eval_mode = use_eval_mode
        self.norm = norm
        self.loss_fn = get_attack_loss(loss)
        self.targeted = targeted
        self.seed = seed

    def make_generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        g = torch.Generator(device=device)
        g.manual_seed(self.seed)
        return g

    def objective(self, logits: torch.Tensor, labels: torch.Tensor,
                  clean_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample objective to *maximise* (targeted losses are negated)."""
        value = self.loss_fn(logits, labels, clean_logits=clean_logits)
        return -value if self.targeted else value

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return project(x_adv, x, self.eps, self.norm)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.detach()
        if not bool(torch.as_tensor(self.eps).any()):
            return x.clone()
        gen = generator if generator is not None else self.make_generator(x.device)
        with eval_mode(self.model) if self.use_eval_mode else contextlib.nullcontext():
            adv = self.perturb(x, labels.detach(), gen)
        return self.project(adv.detach(), x)

    def __repr__(self) -> str:
        eps = f"{self.eps:.5g}" if isinstance(self.eps, float) else "per-channel"
        return f"{type(self).__name__}(eps={eps}, norm={self.norm})"
