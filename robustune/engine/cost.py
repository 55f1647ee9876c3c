"""Measured cost of a training step: forward and backward passes, and seconds.

Every method's cost is *counted*, not declared: hooks on the module that does the method's heavy
work (``Method.cost_module()``: the classifier, CLIP's image tower, the detector) add up the images
that go forward through it and the images whose outputs receive a gradient (a parameter update's
backward and every attack step's input gradient alike). Dividing by the images of the step's batch
gives passes in *batch equivalents*: PGD-10 adversarial training counts 11 forward and 11 backward
passes, ERM 1 and 1, a FAP step (clean and adversarial images in one forward of twice the batch)
its attack steps plus 2. This unit is our choice (neither paper defines one): it makes methods
comparable at equal data. Seconds per step are measured from the batch's transfer to the optimizer
step (the step's loss check synchronises the device), averaged over the steps of this process, on
the hardware that run.json records.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn


def _batch_size(value: Any) -> int | None:
    """Images in the first tensor (or list of images) found in ``value``."""
    if torch.is_tensor(value):
        return int(value.shape[0]) if value.dim() else None
    if isinstance(value, (list, tuple)):
        if value and all(torch.is_tensor(v) and v.dim() == 3 for v in value):
            return len(value)  # a detection batch: a list of CHW images
        for v in value:
            n = _batch_size(v)
            if n is not None:
                return n
    if isinstance(value, dict):
        for v in value.values():
            n = _batch_size(v)
            if n is not None:
                return n
    return None


def _first_grad_tensor(value: Any) -> torch.Tensor | None:
    if torch.is_tensor(value):
        return value if value.requires_grad else None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else []
    for v in items:
        t = _first_grad_tensor(v)
        if t is not None:
            return t
    return None


@dataclass
class PassCounter:
    """Counts images forward through ``module`` and images whose output gets a gradient."""

    forward_images: int = 0
    backward_images: int = 0
    batch_images: int = 0
    steps: int = 0
    seconds: float = 0.0
    paused_depth: int = 0

    def attach(self, module: nn.Module) -> "PassCounter":
        self._handle = module.register_forward_hook(self._on_forward)
        return self

    def detach(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self._handle.remove()
            self._handle = None

    def _on_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.paused_depth:
            return
        n = _batch_size(args) or _batch_size(output) or 0
        self.forward_images += n
        out = _first_grad_tensor(output)
        if out is not None and n:
            out.register_hook(lambda grad, n=n: self._on_backward(n))

    def _on_backward(self, n: int) -> None:
        self.backward_images += n

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Forwards in here (validation, similarity refreshes) are not part of a training step."""
        self.paused_depth += 1
        try:
            yield
        finally:
            self.paused_depth -= 1

    def step_done(self, batch_images: int, seconds: float) -> None:
        self.steps += 1
        self.batch_images += batch_images
        self.seconds += seconds

    def record(self) -> dict[str, Any]:
        """The ``compute`` entry of run.json (passes per step in batch equivalents)."""
        if not self.steps or not self.batch_images:
            return {}
        out: dict[str, Any] = {
            "forward_passes_per_step": round(self.forward_images / self.batch_images, 4),
            "backward_passes_per_step": round(self.backward_images / self.batch_images, 4),
            "seconds_per_step": round(self.seconds / self.steps, 6),
            "steps_counted": self.steps,
            "unit": "batch equivalents: images through the method's model / images in the step's batch",
        }
        return out
