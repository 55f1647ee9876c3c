"""Image folders: ``root/<class>/<image>`` (optionally under ``train/ val/ test/``) and ImageNet.

Unreadable or corrupt image files never crash an epoch: with ``verify=True`` (the default for
``folder``) every file is decoded once at construction and bad ones are dropped with a single
warning that counts them; at load time a file that still fails is replaced by the next good image,
again with one warning per dataset.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_LOAD_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def _load_rgb(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def find_classes(root: Path) -> list[str]:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class folders under {str(root)!r}; expected root/<class>/<image>")
    return classes


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` with robust loading. ``classes`` are folder names unless given."""

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        verify: bool = True,
        class_names: list[str] | None = None,
        class_folders: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
        self.folders = class_folders or find_classes(self.root)
        self.classes = class_names or list(self.folders)
        self.transform = transform
        samples: list[tuple[str, int]] = []
        empty = []
        for label, name in enumerate(self.folders):
            folder = self.root / name
            files = sorted(
                str(p) for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file()
            ) if folder.is_dir() else []
            if not files:
                empty.append(name)
            samples.extend((f, label) for f in files)
        if empty:
            log.warning("%d class folder(s) under %s have no images: %s", len(empty), self.root,
                        ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
        if verify:
            samples = self._drop_unreadable(samples)
        if not samples:
            raise FileNotFoundError(f"no readable images under {str(self.root)!r}")
        self.samples = samples
        self.targets = [t for _, t in samples]
        self._warned = False

    def _drop_unreadable(self, samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        good, bad = [], []
        for path, label in samples:
            try:
                _load_rgb(path).load()
                good.append((path, label))
            except _LOAD_ERRORS:
                bad.append(path)
        if bad:
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
                    log.warning("image %s became unreadable; using the next good image instead", path)
                    self._warned = True
        else:
            raise RuntimeError(f"no readable image left under {self.root}")
        if self.transform is not None:
            img = self.transform(img)
        if not isinstance(img, torch.Tensor):
            from torchvision.transforms.v2.functional import to_dtype, to_image

            img = to_dtype(to_image(img), torch.float32, scale=True)
        return img, label


def _split_root(root: str | None, split: str) -> Path:
    if root is None:
        raise ValueError("this dataset needs data.root (the folder that holds the images)")
    base = Path(root)
    sub = base / split
    return sub if sub.is_dir() else base


@register_dataset("folder")
def folder(split: str = "train", root: str | None = None, transform=None, verify: bool = True,
           **_: object) -> Dataset:
    """An ImageFolder tree; uses ``root/<split>/`` when that sub-folder exists, else ``root``."""
    return ImageFolderDataset(_split_root(root, split), transform=transform, verify=verify)


@register_dataset("imagenet")
def imagenet(split: str = "train", root: str | None = None, transform=None, verify: bool = False,
             class_names: list[str] | None = None, **_: object) -> Dataset:
    """ImageNet in folder layout: ``root/train/<wnid>/*`` and ``root/val/<wnid>/*`` (val by wnid).

    Classes are the sorted wnids (index order of the 1000-way heads); ``verify`` defaults to off
    because decoding 1.28 M files up front is slow; unreadable files are then skipped at load time.
    """
    path = _split_root(root, split)
    if path == Path(root or "") and split in ("train", "val"):
        raise FileNotFoundError(
            f"expected {str(Path(root or '') / split)!r}: ImageNet must be laid out as "
            "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG (val sorted into wnid folders)"
        )
    return ImageFolderDataset(path, transform=transform, verify=verify, class_names=class_names)
