"""DistributedDataParallel around a method's training step.

DDP synchronises gradients only for backward passes that follow a forward *through the DDP
module*, so the step itself is the wrapped module's forward. Attacks inside the step take input
gradients only (``torch.autograd.grad`` w.r.t. the images), which never touch the gradient
buckets, so they run per rank without extra communication. GFN's similarity matrix is computed on
rank 0 and broadcast once (``SimilarityRefresh.similarity_once``). A method with per-rank state
(ER-APT's population memory, ``Method.has_rank_state``) is wrapped with ``broadcast_buffers=False``:
DDP's default would overwrite every rank's buffers with rank 0's at each forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class _StepModule(nn.Module):
    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor, labels: torch.Tensor, ctx: Any) -> dict[str, Any]:
        return self.method.training_step(images, labels, ctx)


class DDPMethod:
    """Quacks like a :class:`~robustune.methods.Method` for the training loop."""

    def __init__(self, method: nn.Module, device: torch.device, find_unused_parameters: bool = False,
                 broadcast_buffers: bool = True) -> None:
        self.method = method
        ids = [device.index or 0] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_StepModule(method), device_ids=ids,
                                           find_unused_parameters=find_unused_parameters,
                                           broadcast_buffers=broadcast_buffers)

    def train(self, mode: bool = True) -> "DDPMethod":
        self.method.train(mode)
        return self

    def trainable_parameters(self):
        return self.method.trainable_parameters()

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, ctx: Any) -> dict[str, Any]:
        return self.ddp(images, labels, ctx)
