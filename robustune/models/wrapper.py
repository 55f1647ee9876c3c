"""The classifier wrapper: ``ImageNormalizer`` in front of a backbone, [0,1] input (RobustBench style)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ImageNormalizer(nn.Module):
    """``(x - mean) / std`` per channel, as buffers so they move with the model."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """A classifier over [0,1] images: ``logits = backbone(normalize(x))``.

    Attributes carry the weights' data config (``mean``, ``std``, ``input_size``, ``crop_pct``,
    ``interpolation``) so data pipelines read it instead of guessing. ``features`` returns the
    pre-logit features (timm's ``forward_head(..., pre_logits=True)``) that GFN's class similarity uses.
    """

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float],
                 input_size: tuple[int, int, int], num_classes: int, crop_pct: float = 1.0,
                 interpolation: str = "bilinear", name: str = "") -> None:
        super().__init__()
        self.normalizer = ImageNormalizer(mean, std)
        self.backbone = backbone
        self.input_size = tuple(input_size)
        self.num_classes = num_classes
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.name = name

    @property
    def std(self) -> torch.Tensor:
        return self.normalizer.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalizer(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features of [0,1] images."""
        z = self.normalizer(x)
        bb = self.backbone
        if hasattr(bb, "forward_features") and hasattr(bb, "forward_head"):
            return bb.forward_head(bb.forward_features(z), pre_logits=True)
        if hasattr(bb, "pre_logits"):
            return bb.pre_logits(z)
        raise TypeError(f"{type(bb).__name__} exposes no pre-logit features")

    def head_weights(self) -> torch.Tensor:
        """The (num_classes, dim) weight matrix of the final linear layer."""
        bb = self.backbone
        head = bb.get_classifier() if hasattr(bb, "get_classifier") else getattr(bb, "head")
        if not isinstance(head, nn.Linear):
            raise TypeError(f"classifier head is {type(head).__name__}, not nn.Linear")
        return head.weight
