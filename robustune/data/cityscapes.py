"""Cityscapes and Foggy-Cityscapes as detection datasets, read from the official layout.

GFN (Sec. 4.3, Table 2) trains a detector on clean Cityscapes and tests it on Foggy-Cityscapes
(Sakaridis et al. 2018: the Cityscapes images with synthetic fog of attenuation β = 0.005, 0.01,
0.02 and the same ``gtFine`` annotations). Both read the folders as they are downloaded:

- ``cityscapes``: ``root/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and
  ``root/gtFine/<split>/<city>/<stem>_gtFine_polygons.json``;
- ``foggy_cityscapes``: ``root/leftImg8bit_foggy/<split>/<city>/<stem>_leftImg8bit_foggy_beta_<β>.png``
  (``beta`` option: 0.005, 0.01 or 0.02) with the same ``root/gtFine`` polygons.

Every polygon file is one image; an image without a polygon file is not part of the set, a
polygon file without its image is an error. Classes: the eight instance classes of the
robust-detection and domain-adaptation literature, :data:`CITYSCAPES_CLASSES`.

Boxes from polygons (our choices, each matching the converters the literature uses, e.g.
mmdetection's ``tools/dataset_converters/cityscapes.py``, which reads ``gtFine_instanceIds.png``):

- The polygons are rasterised in file order with PIL's ``ImageDraw.polygon`` exactly as the
  official ``cityscapesscripts`` ``json2instanceImg`` draws the instance image: a later object is
  drawn over an earlier one, every label with a non-negative Cityscapes id occludes (road, sky,
  the ``out of roi`` frame, ``ego vehicle``, a caravan ...), ``license plate`` (id -1) and objects
  flagged ``deleted`` are not drawn. A polygon that runs around a hole (``out of roi``) leaves the
  hole unfilled, as PIL fills it.
- An object's box is the extent of its *visible* pixels, as inclusive pixel indices turned into
  pixel edges: pixels ``x0..x1`` give ``x1_box = x0``, ``x2_box = x1 + 1`` (the same box as
  pycocotools' ``toBbox`` of the mask). Its ``area`` is the visible pixel count (COCO's segment
  area, which sets the small / medium / large ranges). A fully occluded object has no box.
- ``<class>group`` labels (``cargroup``, ``persongroup`` ...) are crowd regions: ``iscrowd = 1``,
  which COCOeval ignores like COCO's crowd annotations and the detector drops from its training
  targets. Each group polygon is its own region (the instance-image converters merge all groups of
  one class in an image into one region, as the instance image gives them one id).
- Other instance labels (``caravan``, ``trailer``) are not among the eight classes and give no box,
  as in those converters (they are ``ignoreInEval`` in Cityscapes); they still occlude.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from robustune.data.detection import AnnotationError, DetectionDataset, ImageRecord, finish_record
from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)

CITYSCAPES_CLASSES = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
FOGGY_BETAS = (0.005, 0.01, 0.02)
# Every label name of cityscapesscripts' labels.py; "license plate" (id -1) is never drawn.
CITYSCAPES_LABELS = frozenset({
    "unlabeled", "ego vehicle", "rectification border", "out of roi", "static", "dynamic", "ground",
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
    "license plate"})
NOT_DRAWN = frozenset({"license plate"})
POLYGON_SUFFIX = "_gtFine_polygons.json"


def _label_of(name: str, where: str) -> tuple[str, bool]:
    """(base label, is a group) of a polygon label; unknown labels raise."""
    if name not in CITYSCAPES_LABELS and name.endswith("group") and name[: -len("group")] in CITYSCAPES_LABELS:
        return name[: -len("group")], True
    if name not in CITYSCAPES_LABELS:
        raise AnnotationError(f"{where} has label {name!r}, which is not a Cityscapes label (nor '<label>group'); "
                              "fix the polygon file")
    return name, False


def _points(obj: dict[str, Any], where: str) -> list[tuple[float, float]]:
    try:
        pts = [(float(p[0]), float(p[1])) for p in obj["polygon"]]
    except (KeyError, TypeError, ValueError, IndexError):
        raise AnnotationError(f"{where} has no polygon list of [x, y] points") from None
    if not pts:
        raise AnnotationError(f"{where} has an empty polygon")
    return pts


def polygon_boxes(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Boxes of the eight classes from one ``gtFine`` polygon dict (see the module docstring).

    Returns ``width``, ``height``, ``boxes`` (N, 4) x1y1x2y2 px, ``labels`` (indices into
    :data:`CITYSCAPES_CLASSES`), ``iscrowd`` and ``area`` (visible pixels), in file order.
    """
    from PIL import Image, ImageDraw

    try:
        width, height = int(data["imgWidth"]), int(data["imgHeight"])
        objects = list(data["objects"])
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(f"{source}: not a Cityscapes polygon file (needs imgWidth, imgHeight, "
                              "objects)") from None
    drawn = []  # (fill value = object index + 1, label, crowd, polygon points), in file order
    for i, obj in enumerate(objects):
        where = f"{source}: object {i}"
        if obj.get("deleted"):
            continue
        label, group = _label_of(str(obj.get("label")), where)
        if label not in NOT_DRAWN:
            drawn.append((i + 1, label, int(group), _points(obj, where)))
    wanted = [(v, CITYSCAPES_CLASSES.index(label), group, pts) for v, label, group, pts in drawn
              if label in CITYSCAPES_CLASSES]
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for value, _, _, pts in drawn:
        if wanted and value >= wanted[0][0]:  # what comes before the first box cannot cover it
            draw.polygon(pts, fill=value)
    ids = np.asarray(canvas)
    boxes, labels, crowd, area = [], [], [], []
    for value, label, group, pts in wanted:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        # Visible pixels lie inside the polygon's vertex extent (PIL draws nothing outside it).
        x0, y0 = max(int(np.floor(min(xs))), 0), max(int(np.floor(min(ys))), 0)
        x1, y1 = min(int(np.ceil(max(xs))) + 1, width), min(int(np.ceil(max(ys))) + 1, height)
        rows, cols = np.nonzero(ids[y0:y1, x0:x1] == value)
        if not len(rows):
            continue  # fully occluded or outside the image
        boxes.append([x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1])
        labels.append(label)
        crowd.append(group)
        area.append(len(rows))
    return {"width": width, "height": height, "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "labels": np.array(labels, np.int64), "iscrowd": np.array(crowd, np.int64),
            "area": np.array(area, np.float32)}


@functools.lru_cache(maxsize=None)
def _cached_polygon_boxes(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parsed once per process and file version (a run builds its splits several times)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    return polygon_boxes(data, path)


def read_polygon_file(path: Path) -> dict[str, Any]:
    st = path.stat()
    out = _cached_polygon_boxes(str(path), st.st_mtime_ns, st.st_size)
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def _split_folder(root: str | None, folder: str, split: str, name: str, what: str) -> Path:
    if root is None:
        raise FileNotFoundError(f"{name}: set data.root (or --root) to the folder that holds {folder}/ and gtFine/")
    base = Path(root) / folder
    path = base / split
    if not path.is_dir():
        present = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        hint = f"splits present: {', '.join(present)}" if present else f"{base} does not exist"
        raise FileNotFoundError(f"{name}: no {what} folder {path} ({hint}); data.root must be the folder "
                                f"that holds the official {folder}/<split>/<city>/ layout")
    return path


def polygon_files(root: str | None, split: str, ann_dir: str, name: str) -> list[Path]:
    """``<ann_dir>/<split>/<city>/*_gtFine_polygons.json``, sorted; none at all is an error."""
    folder = _split_folder(root, ann_dir, split, name, "annotation")
    files = sorted(folder.glob(f"*/*{POLYGON_SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"{name}: no <city>/*{POLYGON_SUFFIX} files under {folder}")
    return files


def cityscapes_records(files: list[Path], image_of, name: str, tolerance: float = 1.0) -> list[ImageRecord]:
    """One record per polygon file; ``image_of(polygon_file)`` gives its image path (checked)."""
    records = []
    for path in files:
        image = image_of(path)
        if not image.is_file():
            raise FileNotFoundError(f"{name}: polygon file {path} has no image {image}; "
                                    "restore the image or remove the polygon file")
        parsed = read_polygon_file(path)
        stem = path.name[: -len(POLYGON_SUFFIX)]
        rec = ImageRecord(file=str(image), width=parsed["width"], height=parsed["height"],
                          boxes=parsed["boxes"], labels=parsed["labels"], iscrowd=parsed["iscrowd"],
                          area=parsed["area"], source_id=stem, extra={"city": path.parent.name})
        rec, _ = finish_record(rec, str(path), tolerance)
        records.append(rec)
    return records


@register_dataset("cityscapes")
def cityscapes(split: str = "train", root: str | None = None, image_dir: str = "leftImg8bit",
               ann_dir: str = "gtFine", tolerance: float = 1.0, **_: object) -> DetectionDataset:
    """Cityscapes ``gtFine`` instances as boxes of the eight classes (see the module docstring)."""
    files = polygon_files(root, split, ann_dir, "cityscapes")
    images = _split_folder(root, image_dir, split, "cityscapes", "image")

    def image_of(path: Path) -> Path:
        return images / path.parent.name / f"{path.name[: -len(POLYGON_SUFFIX)]}_leftImg8bit.png"

    records = cityscapes_records(files, image_of, "cityscapes", tolerance)
    return DetectionDataset(records, CITYSCAPES_CLASSES, name="cityscapes", source=str(Path(root) / ann_dir / split),
                            check_files=False)


def parse_beta(value: Any) -> float:
    """One of :data:`FOGGY_BETAS` from a number or a string; anything else raises."""
    try:
        beta = float(value)
    except (TypeError, ValueError):
        beta = None
    match = [b for b in FOGGY_BETAS if beta is not None and abs(beta - b) < 1e-9]
    if not match:
        raise ValueError(f"foggy_cityscapes: beta {value!r} is not one of Foggy-Cityscapes' fog levels "
                         f"{', '.join(map(str, FOGGY_BETAS))}")
    return match[0]


def _betas_present(folder: Path) -> list[float]:
    found = set()
    for city in (p for p in folder.iterdir() if p.is_dir()):
        for image in city.glob("*_leftImg8bit_foggy_beta_*.png"):
            try:
                found.add(parse_beta(image.stem.rsplit("_beta_", 1)[1]))
            except ValueError:
                continue
        if found == set(FOGGY_BETAS):
            break
    return sorted(found)


@register_dataset("foggy_cityscapes")
def foggy_cityscapes(split: str = "val", root: str | None = None, beta: float | str | None = None,
                     image_dir: str = "leftImg8bit_foggy", ann_dir: str = "gtFine", tolerance: float = 1.0,
                     **_: object) -> DetectionDataset:
    """Foggy-Cityscapes at one fog level ``beta`` (0.005, 0.01 or 0.02), with Cityscapes' boxes.

    ``beta`` has no default: a dataset is one set of images. The ``foggy_cityscapes`` evaluation
    suite reports each level and their mean (robustune.eval.foggy_cityscapes).
    """
    if beta is None:
        raise ValueError("foggy_cityscapes needs data.options.beta (--option beta=...): one of "
                         f"{', '.join(map(str, FOGGY_BETAS))}; the foggy_cityscapes suite evaluates all three")
    beta = parse_beta(beta)
    files = polygon_files(root, split, ann_dir, "foggy_cityscapes")
    images = _split_folder(root, image_dir, split, "foggy_cityscapes", "image")

    def image_of(path: Path) -> Path:
        stem = path.name[: -len(POLYGON_SUFFIX)]
        return images / path.parent.name / f"{stem}_leftImg8bit_foggy_beta_{beta}.png"

    present = _betas_present(images) if not image_of(files[0]).is_file() else [beta]
    if beta not in present:  # else a missing image is named with its polygon file below
        raise FileNotFoundError(
            f"foggy_cityscapes: no images of beta={beta} under {images} (e.g. {image_of(files[0])}); "
            f"beta values present: {', '.join(map(str, present)) or 'none'}")
    records = cityscapes_records(files, image_of, f"foggy_cityscapes (beta={beta})", tolerance)
    for rec in records:
        rec.extra["beta"] = beta
    return DetectionDataset(records, CITYSCAPES_CLASSES, name="foggy_cityscapes",
                            source=str(Path(root) / ann_dir / split), check_files=False)
