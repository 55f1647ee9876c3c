"""Pixel-intensity histograms of clean vs corrupted images (GFN paper Sec. 3.1, Fig. 3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class IntensityHistogram:
    name: str
    edges: list[float]  # bin edges in [0, 1]
    density: list[float]  # normalised so that sum(density * width) = 1
    mean: float
    std: float
    n_pixels: int


def intensity_histogram(images: torch.Tensor | np.ndarray, name: str = "", bins: int = 32) -> IntensityHistogram:
    """Histogram of all pixel values (every channel) of float [0,1] images or uint8 images."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    values = arr.astype(np.float64).ravel()
    if arr.dtype == np.uint8:
        values = values / 255.0
    density, edges = np.histogram(values, bins=bins, range=(0.0, 1.0), density=True)
    return IntensityHistogram(name, edges.tolist(), density.tolist(), float(values.mean()),
                              float(values.std()), int(values.size))
