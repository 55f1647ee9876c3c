"""Image folders: ``root/<split>/<class>/<image>`` (or a flat ``root/<class>/<image>``) and ImageNet.

A split is always its own folder: a missing ``root/<split>/`` is an error listing the splits that
exist, never the root standing in for it. A flat root (class folders directly under it) is used
only with ``val_fraction``, which holds out a seeded fraction of each class (our choice: the
held-out part serves every split but ``train``). An empty class folder is an error unless
``allow_empty_classes`` (it would shift every label of the other splits).

Unreadable or corrupt image files never crash an epoch. Decoding every file up front is off by
default (1.28 M ImageNet files would take as long as an epoch): ``robustune verify CONFIG`` (or
``data.options.verify: true``) decodes every file once and drops bad ones with a single warning per
split folder (count, full path of the first); without it a file that fails at load time is replaced
by the next good image, with one warning per dataset naming it and ``robustune verify``.
File lists come from a cached, validated index (:mod:`robustune.data.file_index`).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from robustune.data.file_index import folder_samples
from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_LOAD_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)
WARNED: set[tuple[str, int, str]] = set()  # (folder, count, first path): warn once per process


class MissingSplitError(FileNotFoundError, ValueError):
    """The dataset has no such split (a missing ``root/<split>/``, or ImageNet's val in CoOp)."""


def _load_rgb(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _decodes(path: str) -> bool:
    try:
        _load_rgb(path).load()
        return True
    except _LOAD_ERRORS:
        return False


def decodable(paths: list[str], workers: int | None = None) -> list[bool]:
    """Whether each file decodes, checked by a pool of ``workers`` processes (default: the cores available)."""
    from robustune.data.loading import default_num_workers

    workers = workers or default_num_workers()
    if workers <= 1 or len(paths) < 256:
        return [_decodes(p) for p in paths]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_decodes, paths, chunksize=256))


def find_classes(root: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class folders under {str(root)!r}; expected root/<class>/<image>")
    return classes


def without_float_conversion(transform: Callable | None) -> Callable | None | bool:
    """``transform`` minus its final ``ToDtype(float32, scale=True)`` (uint8 output); False if it has none."""
    from torchvision.transforms import v2 as T

    steps = getattr(transform, "transforms", None)
    if not steps:
        return False
    last = steps[-1]
    if not (isinstance(last, T.ToDtype) and last.dtype == torch.float32 and last.scale):
        return False
    return T.Compose(list(steps[:-1])) if len(steps) > 1 else None


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` with robust loading. ``classes`` are folder names unless given."""

    reads_files = True  # loaders give it worker processes (robustune.data.loading)
    _output = "float"  # "uint8": a loader's view without the final float conversion; "encoded": file bytes

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        verify: bool = False,
        class_names: list[str] | None = None,
        class_folders: list[str] | None = None,
        allow_empty_classes: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
        self.folders = class_folders or find_classes(self.root)
        self.classes = class_names or list(self.folders)
        self.transform = transform
        samples = folder_samples(self.root, self.folders, IMG_EXTENSIONS)  # cached index
        counts = [0] * len(self.folders)
        for _, label in samples:
            counts[label] += 1
        empty = [name for name, n in zip(self.folders, counts) if n == 0]
        if empty:
            listed = ", ".join(str(self.root / e) for e in empty[:5]) + (" ..." if len(empty) > 5 else "")
            if not allow_empty_classes:
                raise FileNotFoundError(
                    f"{len(empty)} class folder(s) have no images: {listed}. An empty class still takes a "
                    "label index and shifts the labels of the other splits; remove the folder, add "
                    "images, or set data.allow_empty_classes=true")
            log.warning("%d class folder(s) have no images (allowed): %s", len(empty), listed)
        if verify:
            samples = self._drop_unreadable(samples)
        if not samples:
            raise FileNotFoundError(f"no readable images under {str(self.root)!r}")
        self.samples = samples
        self.targets = [t for _, t in samples]
        self._warned = False

    def _drop_unreadable(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        paths = [p for p, _ in samples]
        bad = [p for p, ok in zip(paths, decodable(paths)) if not ok]
        bad_set = set(bad)
        good = [s for s in samples if s[0] not in bad_set]
        if bad and (str(self.root), len(bad), bad[0]) not in WARNED:
            WARNED.add((str(self.root), len(bad), bad[0]))
            log.warning("skipped %d unreadable image file(s) under %s (first: %s)",
                        len(bad), self.root, bad[0])
        self.skipped = bad
        return good

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                img = _load_rgb(path)
                break
            except _LOAD_ERRORS:
                if not self._warned:
                    log.warning("image %s is unreadable; using the next good image instead (this changes "
                                "which images are counted: `robustune verify CONFIG` finds and drops "
                                "every unreadable file)", path)
                    self._warned = True
        else:
            raise RuntimeError(f"no readable image left under {self.root}")
        if self.transform is not None:
            img = self.transform(img)
        if not isinstance(img, torch.Tensor):
            from torchvision.transforms.v2.functional import to_dtype, to_image

            img = to_image(img) if self._output == "uint8" else to_dtype(to_image(img), torch.float32, scale=True)
        return img, label

    def uint8_view(self) -> "ImageFolderDataset | None":
        """A copy whose items are uint8 (the float conversion left to the device); None if not exact."""
        transform = without_float_conversion(self.transform) if self.transform is not None else None
        if transform is False:
            return None
        view = copy.copy(self)
        view.transform, view._output = transform, "uint8"
        return view

    def encoded_view(self) -> "_EncodedFiles | None":
        """The same files as (encoded bytes, label), for batched decoding on a device."""
        transform = without_float_conversion(self.transform) if self.transform is not None else None
        return None if transform is False else _EncodedFiles(self.samples, transform)

    def keep(self, indices: list[int]) -> None:
        """Restrict to ``samples[indices]`` (classes unchanged)."""
        self.samples = [self.samples[i] for i in indices]
        self.targets = [t for _, t in self.samples]


class _EncodedFiles(Dataset):
    """(file bytes as a uint8 tensor, label); ``device_transform`` resizes / crops after decoding."""

    def __init__(self, samples: list[tuple[str, int]], device_transform: Callable | None) -> None:
        self.samples, self.device_transform = samples, device_transform
        self.targets = [t for _, t in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import read_file

        path, label = self.samples[index]
        return read_file(path), label


def split_folders(base: Path) -> list[str]:
    """Sub-folders of ``base`` that look like splits: they hold folders and no image directly."""
    out = []
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        children = list(os.scandir(entry.path))
        if any(c.is_dir() for c in children) and not any(
                c.is_file() and c.name.lower().endswith(IMG_EXTENSIONS) for c in children):
            out.append(entry.name)
    return out


def _split_root(root: str | None, split: str) -> Path | None:
    """``root/<split>``; None for a flat root (class folders directly under it); else an error."""
    if root is None:
        raise ValueError("this dataset needs data.root (the folder that holds the images)")
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"data.root {str(base)!r} does not exist")
    if (base / split).is_dir():
        return base / split
    splits = split_folders(base)
    if splits:
        raise MissingSplitError(
            f"split {split!r} not found: {str(base / split)!r} does not exist; the splits under "
            f"{str(base)!r} are: {', '.join(splits)}. Use one of them (data.train_split / data.val_split / "
            "data.test_split in the config, --split for eval and analyze)")
    return None


def folder_class_names(root: str, split: str) -> list[str] | None:
    """Sorted class folder names of ``root/<split>/`` (or of a flat ``root``); None when the layout
    is not there (building the dataset then raises the error that explains it)."""
    try:
        path = _split_root(root, split)
        return find_classes(path if path is not None else Path(root))
    except (FileNotFoundError, ValueError):
        return None


def held_out_indices(targets: list[int], fraction: float, seed: int) -> list[int]:
    """A seeded, class-stratified ``fraction`` of the indices (at least 1 per class of ≥ 2 images)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    out = []
    for _, idx in sorted(by_class.items()):
        n = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        out += [idx[j] for j in rng.permutation(len(idx))[:n]]
    return sorted(out)


def _flat_split(base: Path, split: str, val_fraction: float | None, seed: int, **kwargs) -> Dataset:
    if val_fraction is None:
        siblings = split_folders(base.parent) if base.parent != base else []
        layout = (f"Point data.root at {str(base.parent)!r} (it holds the splits {', '.join(siblings)})"
                  if base.name in siblings and len(siblings) > 1 else
                  f"Lay it out as {str(base / 'train')}/<class>/ and {str(base / 'val')}/<class>/")
        raise MissingSplitError(
            f"{str(base)!r} holds class folders directly (no train/ val/ test/ sub-folders), so train, "
            "val and test would be the same images and validation accuracy would be measured on "
            f"training images. {layout}, or set data.val_fraction=0.2 to hold out a seeded 20 % of each class")
    ds = ImageFolderDataset(base, **kwargs)
    held = held_out_indices(ds.targets, val_fraction, seed)
    if split == "train":
        held_set = set(held)
        ds.keep([i for i in range(len(ds.targets)) if i not in held_set])
    else:
        ds.keep(held)
    log.info("%s: %s = %d images (data.val_fraction=%s held out, seed %d)", base, split, len(ds), val_fraction, seed)
    return ds


@register_dataset("folder")
def folder(split: str = "train", root: str | None = None, transform=None, verify: bool = False,
           val_fraction: float | None = None, split_seed: int = 0, allow_empty_classes: bool = False,
           **_: object) -> Dataset:
    """An ImageFolder tree ``root/<split>/<class>/``; a flat ``root/<class>/`` needs ``val_fraction``."""
    kwargs = dict(transform=transform, verify=verify, allow_empty_classes=allow_empty_classes)
    path = _split_root(root, split)
    if path is None:
        return _flat_split(Path(root), split, val_fraction, split_seed, **kwargs)
    if val_fraction is not None:
        raise ValueError(f"data.val_fraction is for a flat folder; {root!r} already has split folders "
                         "(remove data.val_fraction)")
    return ImageFolderDataset(path, **kwargs)


@register_dataset("imagenet")
def imagenet(split: str = "train", root: str | None = None, transform=None, verify: bool = False,
             class_names: list[str] | None = None, **_: object) -> Dataset:
    """ImageNet in folder layout: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*`` (val by wnid).

    Classes are the sorted wnids (index order of the 1000-way heads); ``verify`` defaults to off
    because decoding 1.28 M files up front is slow; unreadable files are then skipped at load time.
    """
    try:
        path = _split_root(root, split)
    except MissingSplitError:
        path = None
    if path is None:
        raise MissingSplitError(
            f"expected {str(Path(root or '') / split)!r}: ImageNet must be laid out as "
            "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (val sorted into wnid folders)"
        )
    return ImageFolderDataset(path, transform=transform, verify=verify, class_names=class_names)
