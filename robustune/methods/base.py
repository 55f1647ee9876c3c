"""The method interface: a small module ``(images, labels, ctx) -> {'loss', 'logits', 'logs'}``.

The engine knows no method. A method owns the model it trains, any extra state it needs (as
buffers, so checkpoints carry it) and its own typed ``Params`` dataclass, built strictly from the
config's ``method.params`` so a typo names the valid keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from robustune.config import from_dict
from robustune.registry import Registry


@dataclass
class NoParams:
    """This method takes no parameters."""


@dataclass
class StepContext:
    """What a training step may use besides the batch."""

    epoch: int
    step: int
    generator: torch.Generator  # seeded from (seed, step): same step → same draws, also on resume
    indices: torch.Tensor | None = None  # (B,) indices into the training set, if the method asks for them


@dataclass
class SetupContext:
    """Handed to :meth:`Method.setup` once, before the first step of a fresh run."""

    train_set: Dataset
    device: torch.device
    seed: int
    run_dir: Any = None
    batch_size: int = 64


class Method(nn.Module):
    """Base class of training methods. Subclasses set ``Params`` and implement ``training_step``."""

    Params: type = NoParams
    needs_indices: bool = False  # True: the engine passes each batch's training-set indices (ctx.indices)

    def __init__(self, model: nn.Module, params: Any, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.params = params
        self.num_classes = num_classes

    def setup(self, ctx: SetupContext) -> None:
        """One-time preparation from the starting model (e.g. GFN's class similarity)."""

    def on_epoch_start(self, epoch: int, ctx: SetupContext) -> None:
        """Called at the start of each epoch (e.g. refresh of the similarity)."""

    def training_step(self, images: torch.Tensor, labels: torch.Tensor,
                      ctx: StepContext) -> dict[str, Any]:
        raise NotImplementedError

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Tensors saved in checkpoints (default: everything; prompt methods save prompts only)."""
        return self.state_dict()

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state, strict=len(state) == len(self.state_dict()))

    def export_state(self) -> dict[str, torch.Tensor]:
        """What ``model.safetensors`` of a finished run holds (default: the eval model's weights)."""
        return self.eval_model().state_dict()

    def load_export(self, path) -> None:
        """Load a ``model.safetensors`` written from :meth:`export_state`."""
        from robustune.models.weights import load_state_dict_file

        load_state_dict_file(self.eval_model(), path)

    def eval_model(self) -> nn.Module:
        """The [0,1]-input classifier that evaluation uses."""
        return self.model


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    return METHODS.register(name)


def create_method(name: str, model: nn.Module, params: dict[str, Any] | Any | None = None,
                  num_classes: int | None = None) -> Method:
    """Build method ``name`` around ``model`` with validated ``params``."""
    cls = METHODS.get(name)
    typed = params if isinstance(params, cls.Params) else from_dict(cls.Params, params or {}, "method.params")
    n = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    return cls(model, typed, num_classes=n)


def list_methods(pattern: str = "*") -> list[str]:
    return METHODS.list(pattern)
