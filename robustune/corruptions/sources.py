"""Source images for corruption generation: an in-memory dataset or an image folder.

A source image has a stable key ``<class>/<stem>`` (its seed and output path derive from it), and
either a uint8 HWC array (datasets, e.g. the built-in digits) or a file path that the worker
decodes (folders; a file that fails to decode is reported and skipped, never fatal).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from robustune.data.folder import IMG_EXTENSIONS, find_classes, split_folders


@dataclass
class SourceImage:
    class_dir: str
    stem: str
    path: str | None = None
    array: np.ndarray | None = None

    @property
    def key(self) -> str:
        return f"{self.class_dir}/{self.stem}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name)) or "_"


def to_uint8_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float [0,1] CHW tensor (or uint8 HWC array) as a uint8 RGB HWC array."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        arr = image
    else:
        # numpy, not torch: tiny torch ops pay thread-pool overhead on every call (20 ms each here)
        chw = torch.as_tensor(image).detach().float().cpu().numpy()
        if chw.ndim == 2:
            chw = chw[None]
        arr = np.clip(np.rint(chw * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def dataset_sources(dataset: Dataset, classes: list[str] | None = None) -> tuple[list[SourceImage], list[str]]:
    """One source per dataset item, stems ``00000``, ``00001``... in dataset order.

    Items of an untransformed file dataset travel as paths (decoded by the workers, the same
    pixels); others are decoded here.
    """
    classes = list(classes or getattr(dataset, "classes", []))
    width = max(5, len(str(len(dataset) - 1)))
    by_path = getattr(dataset, "reads_files", False) and getattr(dataset, "transform", None) is None \
        and hasattr(dataset, "samples")
    sources = []
    for i in range(len(dataset)):
        path, label = dataset.samples[i] if by_path else (None, None)
        image = None
        if not by_path:
            image, label = dataset[i]
        label = int(label)
        name = _safe(classes[label]) if label < len(classes) else str(label)
        sources.append(SourceImage(class_dir=name, stem=f"{i:0{width}d}", path=path,
                                   array=None if by_path else to_uint8_hwc(image)))
    if not classes:
        classes = sorted({s.class_dir for s in sources})
    return sources, [_safe(c) for c in classes]


def folder_sources(root: str | os.PathLike) -> tuple[list[SourceImage], list[str]]:
    """Every image file under ``root/<class>/`` (not decoded here: workers do that)."""
    root = Path(root)
    splits = split_folders(Path(root))
    if splits:  # its split folders would become classes
        raise FileNotFoundError(
            f"{str(root)!r} holds split folders ({', '.join(splits)}), not class folders: corrupt one split, "
            f"e.g. `robustune corrupt folder --root {root} --split {splits[-1]} --out OUT` "
            f"(or pass {str(Path(root) / splits[-1])!r})")
    classes = find_classes(root)
    sources = []
    for name in classes:
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMG_EXTENSIONS:
                stem = str(path.relative_to(root / name).with_suffix("")).replace(os.sep, "__")
                sources.append(SourceImage(class_dir=name, stem=stem, path=str(path)))
    if not sources:
        raise FileNotFoundError(f"no image files under {str(root)!r} (expected root/<class>/<image>)")
    return sources, classes


def load_source(source: SourceImage) -> np.ndarray:
    """The uint8 RGB HWC pixels of a source (decodes the file if needed; raises on a bad file)."""
    if source.array is not None:
        return source.array
    from PIL import Image

    with Image.open(source.path) as img:
        return np.asarray(img.convert("RGB"))
