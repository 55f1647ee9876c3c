"""Detection annotation formats: COCO json + image folder, VOC XML (RTTS), ExDark text files.

Registered datasets (``data.name`` / ``robustune corrupt`` / ``robustune eval``):

- ``coco``: ``options.ann_file`` (an instances json) and ``options.img_dir``, both relative to
  ``data.root`` unless absolute; defaults ``annotations/instances_<split>2017.json`` (or
  ``instances_<split>.json``) and ``<split>2017`` (or ``<split>``). Labels are the json's
  categories sorted by id. COCO-format conversions of Cityscapes load here too (the native
  loaders are in :mod:`robustune.data.cityscapes`); so do the corrupted sets that
  ``robustune corrupt`` writes (``<out>/annotations.json`` + ``<out>/<corruption>/<severity>/``).
- ``voc`` / ``rtts``: ``root/Annotations/*.xml`` + ``root/JPEGImages``; split list
  ``root/ImageSets/Main/<split>.txt`` when present, else every XML (split ``all``). ``rtts`` fixes
  the five RTTS classes. Our choices: VOC's 1-based inclusive pixel boxes become
  ``(xmin - 1, ymin - 1, xmax, ymax)``; ``difficult`` objects are ignore regions (``iscrowd = 1``).
- ``exdark``: ``root/ExDark/<Class>/<image>`` and ``root/ExDark_Annno/<Class>/<image>.txt`` (the
  release's folder names), lines ``Class left top width height ...`` after a ``% bbGt`` header;
  split from ``root/imageclasslist.txt`` (column 5: 1 train, 2 val, 3 test) or ``all``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from robustune.data.detection import AnnotationError, DetectionDataset, ImageRecord, finish_record
from robustune.data.registry import register_dataset

log = logging.getLogger(__name__)

RTTS_CLASSES = ["person", "car", "bus", "bicycle", "motorbike"]
EXDARK_CLASSES = ["Bicycle", "Boat", "Bottle", "Bus", "Car", "Cat", "Chair", "Cup", "Dog", "Motorbike",
                  "People", "Table"]
_EXDARK_SPLITS = {"train": "1", "val": "2", "test": "3"}


def _under(root: str | None, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() or root is None else Path(root) / path


def _first_existing(root: str | None, candidates: list[str], what: str) -> Path:
    for c in candidates:
        if _under(root, c).exists():
            return _under(root, c)
    raise FileNotFoundError(f"no {what} found under {root!r}: tried {', '.join(candidates)}; "
                            f"set data.options.{'ann_file' if what == 'annotation file' else 'img_dir'}")


def _report_dropped(source: str, dropped: int) -> None:
    if dropped:
        log.warning("%s: dropped %d degenerate box(es) (width or height <= 0)", source, dropped)


def coco_records(data: dict[str, Any], img_dir: Path, source: str, tolerance: float = 1.0,
                 ) -> tuple[list[ImageRecord], list[str], list[int]]:
    """Records, class names (categories sorted by id) and the category ids, from a COCO dict."""
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{source}: not a COCO instances file (no {key!r} list)")
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    by_image: dict[Any, list[dict]] = {}
    image_ids = {img["id"] for img in data["images"]}
    for ann in data["annotations"]:
        where = f"{source}: annotation id {ann.get('id')!r} (image id {ann.get('image_id')!r})"
        if ann.get("category_id") not in label_of:
            raise AnnotationError(f"{where} has category_id {ann.get('category_id')!r}, which the file's "
                                  f"categories do not list (valid ids: {cat_ids[:20]}...)")
        if ann.get("image_id") not in image_ids:
            raise AnnotationError(f"{where} refers to an image id that the file's images do not list")
        by_image.setdefault(ann["image_id"], []).append(ann)
    records, dropped = [], 0
    for img in data["images"]:
        anns = by_image.get(img["id"], [])
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], np.float32).reshape(-1, 4)
        rec = ImageRecord(file=str(img_dir / img["file_name"]), width=int(img["width"]),
                          height=int(img["height"]), boxes=boxes,
                          labels=np.array([label_of[a["category_id"]] for a in anns], np.int64),
                          iscrowd=np.array([int(a.get("iscrowd", 0)) for a in anns], np.int64),
                          area=np.array([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns],
                                        np.float32),
                          source_id=img["id"])
        rec, d = finish_record(rec, f"{source}: image id {img['id']!r} ({img['file_name']})", tolerance,
                               box_names=[f"annotation id {a.get('id')!r}" for a in anns])
        dropped += d
        records.append(rec)
    _report_dropped(source, dropped)
    return records, [c["name"] for c in cats], cat_ids


@register_dataset("coco")
def coco(split: str = "val", root: str | None = None, ann_file: str | None = None,
         img_dir: str | None = None, tolerance: float = 1.0, check_files: bool = True,
         **_: object) -> DetectionDataset:
    """A COCO-format instances json and its image folder (see the module docstring)."""
    ann = _under(root, ann_file) if ann_file else _first_existing(
        root, [f"annotations/instances_{split}2017.json", f"annotations/instances_{split}.json"],
        "annotation file")
    if not ann.is_file():
        raise FileNotFoundError(f"COCO annotation file {str(ann)!r} does not exist (data.options.ann_file)")
    images = _under(root, img_dir) if img_dir else _first_existing(root, [f"{split}2017", split, "images"],
                                                                    "image folder")
    try:
        data = json.loads(ann.read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{ann}: not valid JSON ({exc})") from None
    records, classes, cat_ids = coco_records(data, images, str(ann), tolerance)
    ds = DetectionDataset(records, classes, name="coco", source=str(ann), check_files=check_files)
    ds.category_ids = cat_ids
    return ds


def _voc_object(obj, classes: list[str], where: str) -> tuple[list[float], int, int]:
    name = (obj.findtext("name") or "").strip()
    if name not in classes:
        raise AnnotationError(f"{where}: object class {name!r} is not one of {classes}")
    bb = obj.find("bndbox")
    if bb is None:
        raise AnnotationError(f"{where}: object {name!r} has no <bndbox>")
    try:
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: object {name!r} has a <bndbox> without numeric xmin/ymin/xmax/ymax") from None
    return [x1 - 1, y1 - 1, x2, y2], classes.index(name), int(obj.findtext("difficult") or 0)


def voc_record(xml_path: Path, image_dir: Path, classes: list[str], tolerance: float = 1.0) -> tuple[ImageRecord, int]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise AnnotationError(f"{xml_path}: not valid XML ({exc})") from None
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{xml_path}: no <size> (width/height) entry")
    width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
    file_name = root.findtext("filename") or f"{xml_path.stem}.jpg"
    objs = [_voc_object(o, classes, f"{xml_path}: object {i}") for i, o in enumerate(root.findall("object"))]
    rec = ImageRecord(file=str(image_dir / file_name), width=width, height=height,
                      boxes=np.array([o[0] for o in objs], np.float32).reshape(-1, 4),
                      labels=np.array([o[1] for o in objs], np.int64),
                      iscrowd=np.array([o[2] for o in objs], np.int64), source_id=xml_path.stem)
    return finish_record(rec, f"{xml_path}", tolerance)


@register_dataset("voc")
def voc(split: str = "all", root: str | None = None, classes: list[str] | None = None,
        tolerance: float = 1.0, check_files: bool = True, name: str = "voc", **_: object) -> DetectionDataset:
    """VOC-XML annotations (``Annotations/``, ``JPEGImages/``, optional ``ImageSets/Main/<split>.txt``)."""
    if root is None or not (Path(root) / "Annotations").is_dir():
        raise FileNotFoundError(f"{name}: data.root {root!r} must hold Annotations/ and JPEGImages/")
    base = Path(root)
    split_file = base / "ImageSets" / "Main" / f"{split}.txt"
    if split_file.is_file():
        stems = [s.split()[0] for s in split_file.read_text().splitlines() if s.strip()]
        xmls = [base / "Annotations" / f"{s}.xml" for s in stems]
        missing = [x for x in xmls if not x.is_file()]
        if missing:
            raise FileNotFoundError(f"{split_file} lists {missing[0].stem!r} but {missing[0]} does not exist")
    elif split == "all":
        xmls = sorted((base / "Annotations").glob("*.xml"))
    else:
        raise FileNotFoundError(f"{name}: no split file {split_file}; use split 'all' for every annotation")
    if classes is None:
        raise ValueError(f"{name}: pass data.options.classes (the VOC class names in label order)")
    records, dropped = [], 0
    for x in xmls:
        rec, d = voc_record(x, base / "JPEGImages", list(classes), tolerance)
        records.append(rec)
        dropped += d
    _report_dropped(str(base / "Annotations"), dropped)
    return DetectionDataset(records, list(classes), name=name, source=str(base / "Annotations"),
                            check_files=check_files)


@register_dataset("rtts")
def rtts(split: str = "all", root: str | None = None, **kwargs: Any) -> DetectionDataset:
    """RTTS (RESIDE real-world foggy images), VOC-XML, five classes: person car bus bicycle motorbike."""
    kwargs.pop("classes", None)
    return voc(split, root, classes=RTTS_CLASSES, name="rtts", **kwargs)


def exdark_record(txt: Path, image: Path, where: str, tolerance: float = 1.0) -> tuple[ImageRecord, int]:
    from PIL import Image

    lines = [ln.split() for ln in txt.read_text(errors="replace").splitlines() if ln.strip()]
    boxes, labels = [], []
    for i, parts in enumerate(lines):
        if parts[0].startswith("%"):
            continue
        entry = f"{txt}: line {i + 1}"
        if parts[0] not in EXDARK_CLASSES:
            raise AnnotationError(f"{entry}: class {parts[0]!r} is not one of {EXDARK_CLASSES}")
        try:
            left, top, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            raise AnnotationError(f"{entry}: expected 'Class left top width height ...'") from None
        boxes.append([left, top, left + w, top + h])
        labels.append(EXDARK_CLASSES.index(parts[0]))
    if not image.is_file():
        raise FileNotFoundError(f"{where}: annotation {txt} has no image {image}")
    with Image.open(image) as img:
        width, height = img.size
    rec = ImageRecord(file=str(image), width=width, height=height, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                      labels=np.array(labels, np.int64), source_id=image.name)
    return finish_record(rec, str(txt), tolerance)


def _exdark_split(base: Path, split: str) -> set[str] | None:
    if split == "all":
        return None
    listing = base / "imageclasslist.txt"
    if split not in _EXDARK_SPLITS or not listing.is_file():
        raise FileNotFoundError(f"exdark split {split!r} needs {listing} (column 5: 1 train, 2 val, 3 test) "
                                "and a split in train | val | test; or use split 'all'")
    rows = [ln.split() for ln in listing.read_text().splitlines()[1:] if ln.strip()]
    return {r[0] for r in rows if len(r) >= 5 and r[4] == _EXDARK_SPLITS[split]}


@register_dataset("exdark")
def exdark(split: str = "all", root: str | None = None, image_dir: str = "ExDark",
           ann_dir: str = "ExDark_Annno", tolerance: float = 1.0, **_: object) -> DetectionDataset:
    """ExDark (real low-light images), its own per-image annotation text files, twelve classes."""
    if root is None or not (Path(root) / ann_dir).is_dir():
        raise FileNotFoundError(f"exdark: data.root {root!r} must hold {ann_dir}/<Class>/<image>.txt "
                                f"and {image_dir}/<Class>/<image>")
    base = Path(root)
    keep = _exdark_split(base, split)
    records, dropped = [], 0
    for txt in sorted((base / ann_dir).rglob("*.txt")):
        rel = txt.relative_to(base / ann_dir)
        image = base / image_dir / rel.parent / txt.name[: -len(".txt")]
        if keep is not None and image.name not in keep:
            continue
        rec, d = exdark_record(txt, image, "exdark", tolerance)
        records.append(rec)
        dropped += d
    _report_dropped(str(base / ann_dir), dropped)
    return DetectionDataset(records, EXDARK_CLASSES, name="exdark", source=str(base / ann_dir))


def load_category_map(name_or_path: str) -> dict[str, str]:
    """A class-name mapping (source → target) shipped in ``robustune/resources/detection`` or a json file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = Path(__file__).resolve().parent.parent / "resources" / "detection" / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no category mapping {name_or_path!r}: give a json file or one of "
                                "coco_to_rtts, coco_to_exdark")
    data = json.loads(path.read_text())
    return dict(data.get("mapping", data))
