"""Corrupted copies of a detection set in the Michaelis et al. (2019) layout: boxes unchanged.

``out/<corruption>/<severity>/<image stem>.png`` (or ``.jpg``) for every image, and
``out/annotations.json``: the source's ground truth as a COCO instances file (category ids =
label + 1, in the source's class order) whose ``file_name`` entries name the corrupted files, so
each ``out/<corruption>/<severity>/`` folder reads back with the ``coco`` loader
(``ann_file=out/annotations.json, img_dir=out/<corruption>/<severity>``). Corruptions keep the
image size, so every box stays where it was. Generation is the classification pipeline's
(:mod:`robustune.corruptions.generate`): deterministic per (seed, image, corruption, severity),
resumable, atomic per file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from robustune.corruptions.generate import GenerationConfig, GenerationReport, generate_corruptions
from robustune.corruptions.registry import MIN_SIZE, resolve_corruptions, resolve_severities
from robustune.corruptions.sources import SourceImage
from robustune.files import write_json

ANNOTATIONS = "annotations.json"


def detection_sources(dataset: Any) -> list[SourceImage]:
    """One source per image; the stem is the image file's stem (index-prefixed if stems repeat)."""
    stems = [Path(r.file).stem for r in dataset.records]
    unique = len(set(stems)) == len(stems)
    sources = []
    for i, (rec, stem) in enumerate(zip(dataset.records, stems)):
        if min(rec.width, rec.height) < MIN_SIZE:
            raise ValueError(f"{rec.file}: {rec.width}x{rec.height} px is smaller than the {MIN_SIZE} px that "
                             "the corruptions need; detection copies must keep the image size (boxes unchanged)")
        name = stem if unique else f"{i:06d}_{stem}"
        sources.append(SourceImage(class_dir=".", stem=name, path=None if rec.array is not None else rec.file,
                                   array=rec.array))
    return sources


def corrupt_detection_dataset(dataset: Any, out_dir: str | Path, corruptions: str | Sequence[str] = "common",
                              severities: str | Sequence[int] = "1-5", *, seed: int = 0,
                              jpeg_quality: int | None = None, workers: int = 1,
                              source_info: dict[str, Any] | None = None) -> GenerationReport:
    """Write the corrupted images and ``annotations.json`` (see the module docstring)."""
    cfg = GenerationConfig(resolve_corruptions(corruptions), resolve_severities(severities), seed,
                           jpeg_quality, max(1, int(workers)))
    out = Path(out_dir)
    sources = detection_sources(dataset)
    gt = dataset.coco_ground_truth()
    for image, source in zip(gt["images"], sources):
        image["file_name"] = f"{source.stem}{cfg.extension}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ANNOTATIONS, {"info": {"description": "ground truth of the source set, boxes unchanged",
                                            "source": source_info or {}}, **gt})
    info = {**(source_info or {"dataset": getattr(dataset, "name", "detection"), "n_images": len(sources)}),
            "task": "detection", "annotations": ANNOTATIONS}
    return generate_corruptions(sources, list(dataset.classes), out, cfg, info)
