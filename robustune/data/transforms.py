"""Eval-style transforms built from a model's own data config (size, crop fraction, interpolation).

No normalisation here: models normalise inside (:class:`robustune.models.ImageNormalizer`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torchvision.transforms import v2 as T

_INTERP = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


def build_transform(
    input_size: int, crop_pct: float = 1.0, interpolation: str = "bilinear"
) -> Callable:
    """Resize(size / crop_pct) → CenterCrop(size) → float [0,1] tensor (PIL or tensor input)."""
    interp = _INTERP.get(interpolation, T.InterpolationMode.BILINEAR)
    resize = int(math.floor(input_size / crop_pct)) if crop_pct and crop_pct < 1 else input_size
    return T.Compose(
        [
            T.ToImage(),
            T.Resize(resize, interpolation=interp, antialias=True),
            T.CenterCrop(input_size),
            T.ToDtype(torch.float32, scale=True),
        ]
    )
