"""The corruption registry: one function per corruption, ``fn(image_uint8_hwc, severity, seed)``.

The 19 corruptions of ImageNet-C (Hendrycks & Dietterich 2019) come from ``imagecorruptions``
(the ``imagecorruptions-imaug`` distribution). Every call is deterministic in ``seed``: numpy's
global RNG is seeded (most corruptions draw from ``np.random``) and the two corruptions that take
their own generator (``impulse_noise`` via scikit-image, ``glass_blur`` via numba) get the seed
explicitly, because seeding the global RNG does not reach them.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from robustune.registry import Registry, unknown_choice_message

# The ImageNet-C benchmark's 15 corruptions (the mCE set) and its 4 held-out extras, in the order of
# Hendrycks & Dietterich (2019); robustune.eval.corruption_metrics re-exports them.
COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

log = logging.getLogger(__name__)

CorruptionFn = Callable[[np.ndarray, int, int], np.ndarray]
CORRUPTIONS: Registry[CorruptionFn] = Registry("corruption")
register_corruption = CORRUPTIONS.register
MIN_SIZE = 32  # imagecorruptions refuses images smaller than 32 px
_OWN_SEED = {"impulse_noise", "glass_blur"}
SUBSETS = {"common": COMMON_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS,
           "all": COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS,
           "noise": COMMON_CORRUPTIONS[:3], "blur": COMMON_CORRUPTIONS[3:7],
           "weather": COMMON_CORRUPTIONS[7:11], "digital": COMMON_CORRUPTIONS[11:15]}


def _imagecorruptions_fn(name: str) -> CorruptionFn:
    def fn(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
        from imagecorruptions import corrupt

        np.random.seed(seed % 2**32)
        kwargs = {"seed": seed % 2**32} if name in _OWN_SEED else {}
        return corrupt(image, corruption_name=name, severity=severity, **kwargs)

    fn.__name__ = name
    fn.__doc__ = f"imagecorruptions' {name} at ``severity`` 1-5, seeded."
    return fn


for _name in COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS:
    CORRUPTIONS.add(_name, _imagecorruptions_fn(_name))


def list_corruptions(pattern: str = "*") -> list[str]:
    return CORRUPTIONS.list(pattern)


def resolve_corruptions(spec: str | Sequence[str]) -> list[str]:
    """``common`` | ``all`` | ``extra`` | ``noise`` | ``blur`` | ``weather`` | ``digital`` | names, comma-separated.

    Keeps the ImageNet-C order; unknown names raise with the valid choices.
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in filter(None, items):
        names = SUBSETS.get(item, (item,))
        for name in names:
            if name not in CORRUPTIONS:
                raise ValueError(unknown_choice_message("corruption", name, [*SUBSETS, *CORRUPTIONS.list()]))
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no corruption selected")
    return out


def resolve_severities(spec: str | int | Sequence[int]) -> list[int]:
    """``"1-5"``, ``"1,3,5"``, ``3`` or a list; each in 1..5."""
    if isinstance(spec, int):
        values = [spec]
    elif isinstance(spec, str):
        values = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            lo, _, hi = part.partition("-")
            values += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    else:
        values = [int(v) for v in spec]
    bad = [v for v in values if v not in range(1, 6)]
    if bad or not values:
        raise ValueError(f"severities must be in 1..5, got {spec!r}")
    return sorted(set(values))


def ensure_min_size(image: np.ndarray, min_size: int = MIN_SIZE) -> tuple[np.ndarray, bool]:
    """Upsample (bicubic) so the short side is at least ``min_size``; returns (image, upsampled)."""
    h, w = image.shape[:2]
    if min(h, w) >= min_size:
        return image, False
    from PIL import Image

    scale = min_size / min(h, w)
    size = (max(min_size, round(w * scale)), max(min_size, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)), True


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """Corrupt one uint8 RGB image (H, W, 3); deterministic in ``seed``.

    Images smaller than 32 px must be upsampled first (:func:`ensure_min_size`).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    if severity not in range(1, 6):
        raise ValueError(f"severity must be in 1..5, got {severity}")
    out = CORRUPTIONS.get(corruption)(image, severity, seed)
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))
