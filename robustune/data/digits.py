"""The built-in dataset: scikit-learn's ``load_digits`` upsampled to RGB, with a fixed split.

1,797 images of 8×8 handwritten digits (ships with scikit-learn, no download). Upsampled bilinearly
to ``image_size`` (default 32) and repeated to 3 channels. Fixed stratified split with seed 0:
train 1,257 / val 180 / test 360 images (70 / 10 / 20 %).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from robustune.data.registry import register_dataset

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLIT_SIZES = {"train": 1257, "val": 180, "test": 360}


class TensorImageDataset(Dataset):
    """Images held in memory as one float tensor (N, C, H, W) in [0,1]."""

    def __init__(self, images: torch.Tensor, targets: list[int], classes: list[str]) -> None:
        if images.min() < 0 or images.max() > 1:
            raise ValueError("images must be in [0,1]")
        self.images = images
        self.targets = list(targets)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


@functools.lru_cache(maxsize=1)
def _digit_split_indices(seed: int = 0) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    y = load_digits().target
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=SPLIT_SIZES["test"], stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=SPLIT_SIZES["val"], stratify=y[rest], random_state=seed
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


@register_dataset("digits")
def digits(split: str = "train", image_size: int = 32, transform=None, **_: object) -> Dataset:
    """scikit-learn digits as RGB images of ``image_size`` px; ``split`` in train | val | test | all."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    if split == "all":
        idx = np.arange(len(bunch.target))
    elif split in SPLIT_SIZES:
        idx = _digit_split_indices()[split]
    else:
        raise ValueError(f"unknown digits split {split!r}; valid: train, val, test, all")
    x = torch.from_numpy(bunch.images[idx]).float().div_(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.clamp_(0, 1).repeat(1, 3, 1, 1).contiguous()
    return TensorImageDataset(x, bunch.target[idx].tolist(), DIGIT_NAMES)
