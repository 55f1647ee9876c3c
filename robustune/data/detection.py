"""Detection datasets: one record type, checked annotations, a collate, and the built-in ``digits_det``.

Every detection dataset is a :class:`DetectionDataset` (``is_detection = True``). An item is
``(image, target)``: ``image`` a float tensor in [0,1], CHW, at the image's own size (the detector
resizes inside), and ``target`` a dict with

- ``boxes``: float32 (N, 4), ``x1, y1, x2, y2`` in pixels of this image;
- ``labels``: int64 (N,), indices into ``dataset.classes`` (0..C-1; the detector adds its own
  background class, see :mod:`robustune.models.detectors`);
- ``iscrowd``: int64 (N,), 1 for regions that evaluation ignores (COCO crowd, VOC ``difficult``);
- ``area``: float32 (N,), the annotation's area (COCO's segment area when given, else the box's);
- ``image_id``: the index of the image in the dataset.

Annotations are checked once when the dataset is built: a box outside its image (beyond
``tolerance`` px), a category id that the category list does not name and a missing image file
each raise ``ValueError`` / ``FileNotFoundError`` naming the annotation file and the entry.
Degenerate boxes (width or height ≤ 0, a few dozen exist in COCO) are dropped with one warning.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)


@dataclass
class ImageRecord:
    """One image and its annotations (boxes ``x1, y1, x2, y2`` in pixels, labels 0..C-1)."""

    file: str  # path (or, for in-memory images, a stable name used for corrupted copies)
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32
    labels: np.ndarray  # (N,) int64
    iscrowd: np.ndarray | None = None
    area: np.ndarray | None = None
    array: np.ndarray | None = None  # uint8 HWC RGB for in-memory images
    source_id: Any = None  # the id in the source annotations (COCO image id, VOC file stem)
    extra: dict[str, Any] = field(default_factory=dict)


class AnnotationError(ValueError):
    """An annotation entry is invalid; the message names the file and the entry."""


def check_box(box: np.ndarray, width: int, height: int, where: str, tolerance: float = 1.0) -> bool:
    """Raise when ``box`` (x1, y1, x2, y2) leaves the image; False when it is degenerate."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not np.all(np.isfinite(box)):
        raise AnnotationError(f"{where}: box {list(box)} is not finite")
    if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
        raise AnnotationError(
            f"{where}: box [x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g}] lies outside its "
            f"{width}x{height} image (tolerance {tolerance:g} px); fix or remove the entry"
        )
    return x2 > x1 and y2 > y1


def finish_record(rec: ImageRecord, where: str, tolerance: float = 1.0,
                  box_names: list[str] | None = None) -> tuple[ImageRecord, int]:
    """Check every box of ``rec``, clip the tolerated overshoot, drop degenerate boxes.

    ``box_names`` name the entries in errors (e.g. COCO annotation ids); default ``box <i>``.
    """
    boxes = np.asarray(rec.boxes, dtype=np.float32).reshape(-1, 4)
    names = box_names or [f"box {i}" for i in range(len(boxes))]
    keep = np.array([check_box(b, rec.width, rec.height, f"{where}, {names[i]}", tolerance)
                     for i, b in enumerate(boxes)], dtype=bool).reshape(-1)
    n = len(boxes)
    crowd = np.zeros(n, np.int64) if rec.iscrowd is None else np.asarray(rec.iscrowd, np.int64)
    area = None if rec.area is None else np.asarray(rec.area, np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, rec.width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, rec.height)
    if area is None:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    rec.boxes, rec.labels = boxes[keep], np.asarray(rec.labels, np.int64)[keep]
    rec.iscrowd, rec.area = crowd[keep], area[keep]
    return rec, int((~keep).sum())


def load_image_array(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class DetectionDataset(Dataset):
    """Images with boxes. ``classes`` are the label names, ``records`` one :class:`ImageRecord` each."""

    is_detection = True

    def __init__(self, records: list[ImageRecord], classes: list[str], name: str = "",
                 source: str = "", check_files: bool = True) -> None:
        self.records = list(records)
        self.classes = list(classes)
        self.name = name
        self.source = source  # the annotation file / folder, named in errors
        if check_files:
            for i, rec in enumerate(self.records):
                if rec.array is None and not Path(rec.file).is_file():
                    raise FileNotFoundError(
                        f"{source or name}: image entry {i} ({rec.source_id!r}) names the file "
                        f"{rec.file!r}, which does not exist; fix the path or the image folder option"
                    )

    def __len__(self) -> int:
        return len(self.records)

    def image_array(self, index: int) -> np.ndarray:
        """uint8 HWC RGB array of image ``index``."""
        rec = self.records[index]
        arr = rec.array if rec.array is not None else load_image_array(rec.file)
        if arr.shape[:2] != (rec.height, rec.width):
            raise ValueError(f"{rec.file}: the image is {arr.shape[1]}x{arr.shape[0]} px but "
                             f"{self.source or self.name} says {rec.width}x{rec.height}")
        return arr

    def target(self, index: int) -> dict[str, torch.Tensor | int]:
        rec = self.records[index]
        return {"boxes": torch.as_tensor(rec.boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.as_tensor(rec.labels, dtype=torch.int64),
                "iscrowd": torch.as_tensor(rec.iscrowd, dtype=torch.int64),
                "area": torch.as_tensor(rec.area, dtype=torch.float32),
                "image_id": index}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        arr = self.image_array(index)
        image = torch.tensor(arr).permute(2, 0, 1).float().div_(255)
        return image, self.target(index)

    @staticmethod
    def collate_fn(batch: list) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        return detection_collate(batch)

    def coco_ground_truth(self) -> dict[str, Any]:
        """The ground truth as a COCO instances dict in this dataset's label space.

        Image ids are dataset indices, category ids are ``label + 1`` (``categories[i]`` names
        class i); crowd / difficult regions keep ``iscrowd = 1`` so COCOeval ignores them.
        """
        images, anns = [], []
        for i, rec in enumerate(self.records):
            images.append({"id": i, "width": rec.width, "height": rec.height, "file_name": rec.file})
            for box, label, crowd, area in zip(rec.boxes, rec.labels, rec.iscrowd, rec.area):
                x1, y1, x2, y2 = (float(v) for v in box)
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(label) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area),
                             "iscrowd": int(crowd)})
        cats = [{"id": i + 1, "name": name} for i, name in enumerate(self.classes)]
        return {"images": images, "annotations": anns, "categories": cats}


def detection_collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Images of different sizes stay a list; targets a list of dicts."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


# --- the built-in digits_det ------------------------------------------------------------------

DIGITS_DET_SIZES = {"train": 500, "val": 100, "test": 200}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


@functools.lru_cache(maxsize=4)
def _digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    from robustune.data.digits import _digit_split_indices

    bunch = load_digits()
    idx = _digit_split_indices()[split]
    return (bunch.images[idx] / 16.0).astype(np.float32), bunch.target[idx].astype(np.int64)


def _glyph(image8: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray((image8 * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _place(rng: np.random.Generator, size: int, canvas: int, taken: list[np.ndarray]) -> tuple[int, int]:
    """A top-left corner where a ``size`` square overlaps no taken box (20 tries, then anywhere)."""
    for _ in range(20):
        x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
        if all(x >= b[2] or x + size <= b[0] or y >= b[3] or y + size <= b[1] for b in taken):
            return x, y
    return x, y


def digits_det_image(rng: np.random.Generator, pool: tuple[np.ndarray, np.ndarray], canvas: int,
                     min_digit: int, max_digit: int, max_objects: int = 4):
    """One canvas: 1..max_objects real digits, each box the tight box of its ink (> 0.1)."""
    images, labels = pool
    bg = rng.uniform(0.0, 0.35, size=3).astype(np.float32)
    out = np.broadcast_to(bg, (canvas, canvas, 3)).copy()
    out += rng.normal(0, 0.03, size=out.shape).astype(np.float32)
    boxes, cls, squares = [], [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        j = int(rng.integers(len(labels)))
        size = int(rng.integers(min_digit, max_digit + 1))
        x, y = _place(rng, size, canvas, squares)
        squares.append(np.array([x, y, x + size, y + size]))
        alpha = _glyph(images[j], size)[..., None]
        colour = rng.uniform(0.65, 1.0, size=3).astype(np.float32)
        out[y:y + size, x:x + size] = out[y:y + size, x:x + size] * (1 - alpha) + colour * alpha
        ys, xs = np.nonzero(alpha[..., 0] > 0.1)
        boxes.append([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1])
        cls.append(int(labels[j]))
    pixels = (out.clip(0, 1) * 255).round().astype(np.uint8)
    return pixels, np.array(boxes, np.float32), np.array(cls, np.int64)


@register_dataset("digits_det")
def digits_det(split: str = "train", n_images: int | dict[str, int] | None = None, canvas: int = 64,
               min_digit: int = 14, max_digit: int = 28, max_objects: int = 4, seed: int = 0,
               **_: object) -> DetectionDataset:
    """Real scikit-learn digits pasted on ``canvas`` px canvases: 1..4 per image, known boxes.

    Deterministic in (seed, split). Each split draws its digits from the same split of the
    ``digits`` dataset (so test digits are never seen in training). Default sizes: train 500,
    val 100, test 200 images; ``n_images`` is one count for every split or a mapping split → count
    (e.g. ``{test: 100}``; splits it does not name keep their default). Boxes are the tight boxes
    of each digit's ink. The first n images of a split do not depend on n (a smaller set is a prefix).
    """
    if split not in DIGITS_DET_SIZES:
        raise ValueError(f"unknown digits_det split {split!r}; valid: {', '.join(DIGITS_DET_SIZES)}")
    if not 4 <= min_digit <= max_digit <= canvas:
        raise ValueError(f"digits_det needs 4 <= min_digit <= max_digit <= canvas, got "
                         f"{min_digit}, {max_digit}, {canvas}")
    n = _split_size(split, n_images)
    records = _digits_det_records(split, n, canvas, min_digit, max_digit, max_objects, seed)
    from robustune.data.digits import DIGIT_NAMES

    return DetectionDataset(list(records), DIGIT_NAMES, name="digits_det", source=f"digits_det/{split}")


def _split_size(split: str, n_images: int | dict[str, int] | None) -> int:
    if isinstance(n_images, dict):
        unknown = sorted(set(n_images) - set(DIGITS_DET_SIZES))
        if unknown:
            raise ValueError(f"digits_det option n_images names unknown split(s) {', '.join(map(repr, unknown))}; "
                             f"valid: {', '.join(DIGITS_DET_SIZES)}")
        n_images = n_images.get(split)
    n = DIGITS_DET_SIZES[split] if n_images is None else int(n_images)
    if n < 1:
        raise ValueError(f"digits_det option n_images must be >= 1 for split {split!r}, got {n}")
    return n


@functools.lru_cache(maxsize=8)
def _digits_det_records(split: str, n: int, canvas: int, min_digit: int, max_digit: int,
                        max_objects: int, seed: int) -> tuple[ImageRecord, ...]:
    """Generated once per process and argument set (a run builds its splits several times)."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split]])
    pool = _digit_pool(split)
    records = []
    for i in range(n):
        pixels, boxes, labels = digits_det_image(rng, pool, canvas, min_digit, max_digit, max_objects)
        rec, _ = finish_record(ImageRecord(file=f"{i:05d}.png", width=canvas, height=canvas, boxes=boxes,
                                           labels=labels, array=pixels, source_id=i), f"digits_det/{split}")
        records.append(rec)
    return tuple(records)
