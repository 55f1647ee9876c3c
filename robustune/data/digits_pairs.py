"""``digits_pairs``: a 100-class testbed where neighbour classes exist, built from real digits.

Class ``"37"`` is an image of a handwritten 3 (left) next to a handwritten 7 (right), both real
scikit-learn digits. Natural neighbours: the 18 classes sharing a digit in the same position
("3x", "x7"), plus classes with visually close digits (3 / 8 / 9, 1 / 7 ...). Our choices (no
paper defines this set):

- Layout: each 8×8 digit is resized bilinearly to ``image_size`` tall × ``image_size / 2`` wide
  (stretched vertically, so the pair fills the square canvas: a patch-8 tiny CLIP then sees 8
  patches per digit), placed left | right, repeated to 3 channels and quantised to uint8 (so the
  images equal their PNG copies in ``digits_pairs-C``).
- Sources: the train split is composed only of digit images of the ``digits`` train split, val of
  its val split and test of its test split (:func:`robustune.data.digits._digit_split_indices`),
  so no digit image is in two splits. Per class and side the sources are a seeded permutation of
  that digit's images, cycled: every source image is used about equally, and within a class no
  source repeats on a side until all were used. For "aa" the right side is the left permutation
  shifted by one, so the two halves are never the same image.
- Sizes per class (defaults): train 100, val 10, test 30 (10,000 / 1,000 / 3,000 images).

Deterministic from ``seed`` (default 0). Generated in well under a second and cached twice: on
disk under :func:`robustune.utils.cache_dir` ``/datasets`` (uint8 ``.npz``, keyed by every
option) and per process. ``sources`` (N, 2) holds the left / right source indices into
``sklearn.datasets.load_digits()``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging

import numpy as np
import torch
import torch.nn.functional as F

from robustune.data.digits import TensorImageDataset, _digit_split_indices
from robustune.data.registry import register_dataset
from robustune.files import atomic_path
from robustune.utils import cache_dir

log = logging.getLogger(__name__)

PAIR_CLASSES = [f"{a}{b}" for a in range(10) for b in range(10)]
PER_CLASS = {"train": 100, "val": 10, "test": 30}
TEMPLATE = "a photo of the number {}."  # CoOp-style single template (as robustune.clip.templates)
VERSION = 1  # part of the cache key: bump when the composition changes


def _side_sources(pool: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of ``pool`` cycled to ``n`` items, and the same shifted by one."""
    perm = rng.permutation(pool)
    reps = -(-n // len(perm))
    return np.tile(perm, reps)[:n], np.tile(np.roll(perm, 1), reps)[:n]


def compose_sources(split: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(targets (N,), sources (N, 2)): class-sorted pairs of ``split``'s digit indices."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    idx = _digit_split_indices()[split]
    pools = [idx[y[idx] == d] for d in range(10)]
    # One stream per (split, seed): the splits of one seed are drawn independently.
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split)])
    targets, sources = [], []
    for a in range(10):
        for b in range(10):
            left, shifted = _side_sources(pools[a], per_class, rng)
            right = shifted if a == b else _side_sources(pools[b], per_class, rng)[0]
            sources.append(np.stack([left, right], axis=1))
            targets.append(np.full(per_class, 10 * a + b))
    return np.concatenate(targets), np.concatenate(sources)


def render_pairs(sources: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (N, 1, S, S) images: digit ``sources[:, 0]`` left of digit ``sources[:, 1]``."""
    from sklearn.datasets import load_digits

    digits = torch.from_numpy(load_digits().images).float().div_(16.0).unsqueeze(1)
    halves = F.interpolate(digits, size=(image_size, image_size // 2), mode="bilinear",
                           align_corners=False).clamp_(0, 1)
    src = torch.from_numpy(sources)
    pairs = torch.cat([halves[src[:, 0]], halves[src[:, 1]]], dim=3)
    return pairs.mul_(255).round_().to(torch.uint8).numpy()


def _cache_file(split: str, image_size: int, per_class: int, seed: int):
    key = json.dumps({"split": split, "image_size": image_size, "per_class": per_class, "seed": seed,
                      "version": VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "datasets" / f"digits_pairs-{split}-{image_size}px-{digest}.npz"


@functools.lru_cache(maxsize=6)
def _pairs_arrays(split: str, image_size: int, per_class: int, seed: int, where: str):
    """(uint8 images, targets, sources) of a split, from the disk cache or generated and cached."""
    path = _cache_file(split, image_size, per_class, seed)
    if path.is_file():
        with np.load(path) as z:
            return z["images"], z["targets"], z["sources"]
    targets, sources = compose_sources(split, per_class, seed)
    images = render_pairs(sources, image_size)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # another process may write it too
        np.savez(f, images=images, targets=targets, sources=sources)
    log.info("generated digits_pairs %s (%d images) into %s", split, len(targets), path)
    return images, targets, sources


@register_dataset("digits_pairs")
def digits_pairs(split: str = "train", image_size: int = 32, transform=None, seed: int = 0,
                 per_class: int | None = None, **_: object) -> TensorImageDataset:
    """Two real digits side by side, 100 classes "00".."99"; ``split`` in train | val | test.

    ``per_class`` overrides the split's images per class (defaults: train 100, val 10, test 30).
    """
    if split not in PER_CLASS:
        raise ValueError(f"unknown digits_pairs split {split!r}; valid: {', '.join(PER_CLASS)}")
    if image_size < 2 or image_size % 2:
        raise ValueError(f"digits_pairs needs an even image_size >= 2 (two halves), got {image_size}")
    n = PER_CLASS[split] if per_class is None else int(per_class)
    if n < 1:
        raise ValueError(f"digits_pairs per_class must be positive, got {n}")
    images, targets, sources = _pairs_arrays(split, int(image_size), n, int(seed), str(cache_dir()))
    x = torch.from_numpy(images).float().div_(255.0).expand(-1, 3, -1, -1)  # 3 channels, no copy
    ds = TensorImageDataset(x, targets.tolist(), PAIR_CLASSES)
    ds.sources = torch.from_numpy(sources)
    ds.template = TEMPLATE
    return ds
