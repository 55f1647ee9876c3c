"""Bridge to `torchattacks <https://github.com/Harry24k/adversarial-attacks-pytorch>`_ 3.5.1.

The AutoAttack components (APGD, APGD-T, FAB, Square; Croce & Hein 2020) come from torchattacks,
whose code is a port of the authors' ``fra31/auto-attack``. This module owns what torchattacks does
not do the way we need:

* eval mode and per-submodule restore (our :class:`~robustune.attacks.base.Attack` base);
* projection onto the ε-ball and [0,1] of whatever comes back;
* seeding: torchattacks calls ``torch.manual_seed`` on the *global* generator; we derive the seed
  from the caller's generator and run inside :func:`torch.random.fork_rng`, so results depend only
  on (seed, batch) and the caller's global random state is left untouched;
* settings: every default is the AutoAttack "standard" one, not torchattacks' (which uses 10
  steps and n−1 target classes).

torchattacks is installed with ``pip install --no-deps torchattacks==3.5.1`` (``make`` does it):
its ``requests~=2.25.1`` pin is never imported and is kept out of the environment.
"""

from __future__ import annotations

from typing import Any

import torch

from robustune.attacks.base import Attack

TORCHATTACKS_VERSION = "3.5.1"


def import_torchattacks() -> Any:
    """``torchattacks``, or an ImportError that says how to install it without its old pins."""
    try:
        import torchattacks
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the AutoAttack components (apgd-ce, apgd-t, fab-t, square, autoattack) need torchattacks: "
            f"`pip install --no-deps torchattacks=={TORCHATTACKS_VERSION}` (run by `make`)"
        ) from exc
    return torchattacks


def derive_seed(generator: torch.Generator | None, fallback: int | None) -> int:
    """A 31-bit seed drawn from ``generator`` (one draw), else ``fallback`` (else 0)."""
    if generator is None:
        return int(fallback or 0)
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device).item())


def count_classes(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


class ExternalAttack(Attack):
    """An attack whose inner loop is a torchattacks class; subclasses implement :meth:`build`.

    Args:
        model: any module mapping [0,1] images to logits.
        eps: radius of the threat model.
        norm: ``"Linf"`` or ``"L2"``.
        seed: seed used when no generator is passed to the call.
    """

    needs_grad = True  # False for score-based attacks (Square): no autograd graph is built

    def build(self, seed: int, num_classes: int) -> Any:
        """The configured torchattacks attack for one call."""
        raise NotImplementedError

    def perturb(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        seed = derive_seed(generator, self.seed)
        devices = [x.device.index if x.device.index is not None else torch.cuda.current_device()] \
            if x.is_cuda else []
        with torch.random.fork_rng(devices=devices), torch.set_grad_enabled(self.needs_grad):
            atk = self.build(seed, count_classes(self.model, x))
            atk.set_device(x.device)
            adv = atk(x, y)
        return adv.detach().to(x.dtype)
