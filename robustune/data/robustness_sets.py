"""Loaders for released robustness benchmarks and generated corrupted sets.

- ImageNet-C layout ``root/<corruption>/<severity>/<class>/<file>`` (also what
  :mod:`robustune.corruptions` writes; its ``manifest.json`` gives the class order).
- CIFAR-10-C / CIFAR-100-C: ``root/<corruption>.npy`` (5 severities × 10,000 images stacked,
  uint8 NHWC) and ``root/labels.npy``.
- ImageNet-A / ImageNet-R: ``root/<wnid>/<file>`` over 200 wnids each; labels are indices into the
  sorted wnid list, and :func:`imagenet_subset_indices` gives the columns of a 1000-way head.
- ImageNet-P: ``root/<perturbation>/<wnid>/<file>.mp4`` (released) or ``.npy`` (T, H, W, 3) uint8.
"""

from __future__ import annotations

import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from robustune.data.folder import ImageFolderDataset, find_classes
from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)
SUBSETS_200 = ("imagenet-a", "imagenet-r")


@functools.lru_cache(maxsize=None)
def _wnid_file(name: str) -> tuple[str, ...]:
    text = resources.files("robustune").joinpath("resources", name).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k wnids in sorted order (the class order of 1000-way heads)."""
    return list(_wnid_file("imagenet_wnids.txt"))


def imagenet_subset_wnids(name: str) -> list[str]:
    """The 200 sorted wnids of ``imagenet-a`` or ``imagenet-r`` (package data)."""
    if name not in SUBSETS_200:
        raise ValueError(f"unknown ImageNet subset {name!r}; valid: {', '.join(SUBSETS_200)}")
    return list(_wnid_file(f"{name.replace('-', '_')}_wnids.txt"))


def imagenet_subset_indices(name: str) -> list[int]:
    """Columns of a 1000-way head that belong to the subset, in the subset's label order."""
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    return [index[w] for w in imagenet_subset_wnids(name)]


def imagenet_subset_mask(name: str) -> torch.Tensor:
    """Boolean (1000,) mask of the subset's classes."""
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[imagenet_subset_indices(name)] = True
    return mask


def _plain_transform() -> Callable:
    from torchvision.transforms import v2 as T

    return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True)])


def corruption_folder(root: str | os.PathLike, corruption: str, severity: int, *,
                      classes: list[str] | None = None, transform: Callable | None = None,
                      verify: bool = False) -> ImageFolderDataset:
    """One (corruption, severity) cell of an ImageNet-C style tree, images as float [0,1] CHW.

    Class order: ``classes`` if given, else ``manifest.json``'s (generated sets), else sorted folders
    (= wnid order for ImageNet-C). No resizing unless ``transform`` does it: the released
    ImageNet-C images are evaluated as they are.
    """
    root = Path(root)
    cell = root / corruption / str(severity)
    if not cell.is_dir():
        raise FileNotFoundError(f"no folder {str(cell)!r}: expected <root>/<corruption>/<severity>/<class>/<file>")
    if classes is None and (root / "manifest.json").exists():
        from robustune.files import read_json

        classes = read_json(root / "manifest.json").get("classes")
    folders = list(classes) if classes else find_classes(cell)
    return ImageFolderDataset(cell, transform=transform or _plain_transform(), verify=verify,
                              class_folders=folders, allow_empty_classes=True)


def available_cells(root: str | os.PathLike) -> dict[str, list[int]]:
    """The (corruption → severities) present in an ImageNet-C style tree or a CIFAR-C folder."""
    root = Path(root)
    if (root / "labels.npy").exists():
        return {p.stem: [1, 2, 3, 4, 5] for p in sorted(root.glob("*.npy")) if p.stem != "labels"}
    out: dict[str, list[int]] = {}
    for c in sorted(p for p in root.iterdir() if p.is_dir()):
        sev = sorted(int(s.name) for s in c.iterdir() if s.is_dir() and s.name.isdigit())
        if sev:
            out[c.name] = sev
    return out


class CorruptionArrayDataset(Dataset):
    """CIFAR-10-C / CIFAR-100-C: one severity slice of ``<corruption>.npy`` (memory-mapped)."""

    def __init__(self, root: str | os.PathLike, corruption: str, severity: int,
                 per_severity: int = 10_000, classes: list[str] | None = None,
                 transform: Callable | None = None) -> None:
        root = Path(root)
        self.transform = transform
        path = root / f"{corruption}.npy"
        if not path.exists() or not (root / "labels.npy").exists():
            raise FileNotFoundError(f"expected {str(path)!r} and {str(root / 'labels.npy')!r} (CIFAR-C layout)")
        if severity not in range(1, 6):
            raise ValueError(f"severity must be in 1..5, got {severity}")
        lo, hi = (severity - 1) * per_severity, severity * per_severity
        self.images = np.load(path, mmap_mode="r")[lo:hi]
        self.targets = np.load(root / "labels.npy")[lo:hi].astype(int).tolist()
        if len(self.images) != len(self.targets) or len(self.targets) == 0:
            raise ValueError(f"{path} holds {len(self.images)} images for severity {severity}, "
                             f"labels {len(self.targets)}: expected 5 x {per_severity} stacked")
        self.classes = classes or [str(i) for i in range(int(max(self.targets)) + 1)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1).float().div_(255)
        return (self.transform(x) if self.transform else x), self.targets[index]


class MemoryImages(Dataset):
    """A decoded corruption cell held in memory as uint8 (exact for 8-bit images); items as float [0,1]."""

    def __init__(self, images: torch.Tensor, targets: list[int], classes: list[str]) -> None:
        self.images, self.targets, self.classes = images, targets, classes
        self.transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].float().mul_(1 / 255)  # bit-identical to torchvision's ToDtype(scale=True)
        return (self.transform(x) if self.transform else x), self.targets[index]


@functools.lru_cache(maxsize=128)
def _memory_cell(root: str, corruption: str, severity: int, classes: tuple[str, ...] | None,
                 stamp: float) -> MemoryImages:
    ds = corruption_cell(root, corruption, severity, classes=list(classes) if classes else None)
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([x for x, _ in items]).mul_(255).round_().to(torch.uint8)
    return MemoryImages(images, [int(y) for _, y in items], list(getattr(ds, "classes", []) or []))


def memory_cell(root: str | os.PathLike, corruption: str, severity: int,
                classes: list[str] | None = None) -> MemoryImages:
    """:func:`corruption_cell` decoded once per process and kept in memory (uint8).

    For small generated sets evaluated by several models in one process (the demo's digits-C:
    45 cells × 360 images ≈ 50 MB): each PNG is decoded once instead of once per model. A fresh
    copy is made when the cell folder changes (its modification time is part of the key).
    """
    cell = Path(root) / corruption / str(severity)
    stamp = cell.stat().st_mtime if cell.exists() else 0.0
    shared = _memory_cell(str(root), corruption, severity, tuple(classes) if classes else None, stamp)
    view = MemoryImages(shared.images, shared.targets, shared.classes)  # own .transform per caller
    return view


def corruption_cell(root: str | os.PathLike, corruption: str, severity: int, **kwargs) -> Dataset:
    """A corrupted cell from either layout (CIFAR-C arrays when ``labels.npy`` exists)."""
    if (Path(root) / "labels.npy").exists():
        return CorruptionArrayDataset(root, corruption, severity, classes=kwargs.get("classes"),
                                      transform=kwargs.get("transform"))
    return corruption_folder(root, corruption, severity, **kwargs)


@register_dataset("imagenet-a")
def imagenet_a(split: str = "test", root: str | None = None, transform=None, **_: object) -> Dataset:
    """ImageNet-A (200 wnid folders); labels index the sorted wnids."""
    return _subset200("imagenet-a", root, transform)


@register_dataset("imagenet-r")
def imagenet_r(split: str = "test", root: str | None = None, transform=None, **_: object) -> Dataset:
    """ImageNet-R (200 wnid folders); labels index the sorted wnids."""
    return _subset200("imagenet-r", root, transform)


def _subset200(name: str, root: str | None, transform) -> Dataset:
    if root is None:
        raise ValueError(f"{name} needs a root folder holding its 200 wnid folders")
    wnids = imagenet_subset_wnids(name)
    present = set(find_classes(Path(root)))
    unknown = sorted(present - set(wnids))
    if unknown:
        raise ValueError(f"{root} has folders that are not {name} wnids (e.g. {unknown[0]}); wrong dataset?")
    return ImageFolderDataset(root, transform=transform or _plain_transform(), verify=False,
                              class_folders=wnids, allow_empty_classes=True)


class PerturbationSequences(Dataset):
    """ImageNet-P sequences of one perturbation: items are (frames (T, C, H, W) in [0,1], label)."""

    def __init__(self, root: str | os.PathLike, perturbation: str, classes: list[str] | None = None,
                 max_frames: int | None = None) -> None:
        base = Path(root) / perturbation
        if not base.is_dir():
            raise FileNotFoundError(f"no folder {str(base)!r}: expected <root>/<perturbation>/<class>/<seq>.mp4|.npy")
        self.classes = list(classes) if classes else find_classes(base)
        self.samples = [(str(p), i) for i, c in enumerate(self.classes) if (base / c).is_dir()
                        for p in sorted((base / c).iterdir()) if p.suffix.lower() in (".mp4", ".npy")]
        if not self.samples:
            raise FileNotFoundError(f"no .mp4 or .npy sequences under {str(base)!r}")
        self.targets = [t for _, t in self.samples]
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        frames = np.load(path) if path.endswith(".npy") else read_video_frames(path)
        frames = frames[: self.max_frames] if self.max_frames else frames
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255), label


def read_video_frames(path: str) -> np.ndarray:
    """All frames of a video as uint8 RGB (T, H, W, 3), decoded with OpenCV."""
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"could not decode any frame of {path!r}")
    return np.stack(frames)
