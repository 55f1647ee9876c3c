"""Detection evaluation: COCO mAP with pycocotools' COCOeval, corruption cells, mPC / rPC, RTTS / ExDark.

The same suite names as for classifiers select the detection suites when the model is a
detector (``robustune eval RUN --suite clean,corruptions``): :func:`robustune.eval.suites.evaluate`
looks up ``<suite>@detection`` first.

- ``clean``: cell ``clean`` (metric ``mAP`` = AP@[.5:.95]) and ``clean/AP50``, ``clean/AP75``,
  ``clean/APs``, ``clean/APm``, ``clean/APl`` (an area range without ground truth has no cell: COCOeval
  says -1 there, which is no number). A figure with a few images, ground truth (green) and
  predictions of score ≥ 0.5 (red) goes to ``<eval>/figures/detections_clean.png``.
- ``corruptions``: ``--option corruption_root=DIR`` made by ``robustune corrupt`` of a detection set
  (Michaelis et al. 2019 layout: ``DIR/<corruption>/<severity>/<image>`` + ``DIR/annotations.json``,
  boxes unchanged). One cell ``corruptions/<c>/<s>`` (mAP) per corruption × severity, resumable;
  then ``corruptions/mPC`` = mean over corruptions of the mean over severities of mAP, and
  ``corruptions/rPC`` = mPC / clean mAP (needs the ``clean`` cell), recomputed from the stored
  cells on every run. ``details.complete`` says whether all 15 × 5 cells were there.
- ``rtts`` / ``exdark``: ``--option rtts_root=DIR`` / ``exdark_root=DIR`` (and ``rtts_split`` /
  ``exdark_split``, default ``all``); the detector's classes are mapped to the target classes by
  name through ``category_map`` (default ``coco_to_rtts`` / ``coco_to_exdark`` from
  ``robustune/resources/detection``; a class whose name already is a target class maps to itself);
  predictions of unmapped classes are dropped.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from robustune.attacks import eval_mode
from robustune.data import build_loader
from robustune.data.detection import DetectionDataset
from robustune.eval.results import Cell
from robustune.eval.suites import EvalContext, register_suite

log = logging.getLogger(__name__)
STAT_NAMES = ["mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
COMMON_15 = 15 * 5


def as_detection_dataset(ds: Dataset) -> DetectionDataset:
    """A :class:`DetectionDataset` (a ``Subset`` becomes one over the selected records)."""
    if isinstance(ds, Subset):
        base = as_detection_dataset(ds.dataset)
        return DetectionDataset([base.records[i] for i in ds.indices], base.classes, base.name,
                                base.source, check_files=False)
    if not isinstance(ds, DetectionDataset):
        raise TypeError(f"a detector needs a detection dataset, got {type(ds).__name__}")
    return ds


@torch.no_grad()
def predict_detections(model: nn.Module, dataset: Dataset, batch_size: int = 8,
                       device: torch.device | str = "cpu", desc: str = "detect") -> list[dict[str, torch.Tensor]]:
    """One dict per image (``boxes`` x1y1x2y2 px, ``scores``, ``labels`` 0..C-1), on the CPU."""
    out = []
    with eval_mode(model):
        for images, _ in tqdm(build_loader(dataset, batch_size), desc=desc, leave=False):
            preds = model([x.to(device) for x in images])
            out += [{k: v.detach().cpu() for k, v in p.items()} for p in preds]
    return out


def coco_detections(preds: list[dict[str, torch.Tensor]], image_ids: list[int] | None = None) -> list[dict]:
    """COCO result entries (xywh, category_id = label + 1) of per-image predictions."""
    dets = []
    for i, p in enumerate(preds):
        img = i if image_ids is None else image_ids[i]
        for box, score, label in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": img, "category_id": int(label) + 1, "score": float(score),
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    return dets


def coco_map(ground_truth: dict[str, Any], detections: list[dict]) -> dict[str, float | None]:
    """COCOeval (bbox) stats by name; None where COCOeval has no value (-1: no ground truth there).

    With no detection at all every AP / AR with ground truth is 0 (pycocotools cannot load an empty
    result list; a class without detections scores 0 in COCOeval too).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not ground_truth["annotations"] and not detections:
        return {name: None for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"info": {}, **ground_truth}
        gt.createIndex()
        if not detections:
            return {name: 0.0 for name in STAT_NAMES}
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (None if v < 0 else float(v)) for name, v in zip(STAT_NAMES, ev.stats)}


def detection_map(model: nn.Module, dataset: Dataset, batch_size: int = 8,
                  device: torch.device | str = "cpu", desc: str = "detect") -> dict[str, float | None]:
    """COCO stats of ``model`` on ``dataset`` (labels and ground truth in the dataset's class space)."""
    ds = as_detection_dataset(dataset)
    return coco_map(ds.coco_ground_truth(), coco_detections(predict_detections(model, ds, batch_size, device, desc)))


def map_cells(prefix: str, suite: str, stats: dict[str, float | None], n: int, **details: Any) -> list[Cell]:
    """``prefix`` (mAP) and ``prefix/AP50`` ... cells; undefined stats get no cell."""
    if stats["mAP"] is None:
        raise ValueError(f"{prefix}: the evaluation set has no ground-truth boxes, so mAP is undefined")
    cells = [Cell(key=prefix, suite=suite, metric="mAP", value=stats["mAP"], n=n,
                  details={**details, "coco_stats": stats})]
    for name in ("AP50", "AP75", "APs", "APm", "APl"):
        if stats[name] is not None:
            cells.append(Cell(key=f"{prefix}/{name}", suite=suite, metric=name, value=stats[name], n=n))
    return cells


def draw_detections(dataset: DetectionDataset, preds: list[dict], path: Path, n: int = 4,
                    min_score: float = 0.5) -> Path:
    """A PNG strip of the first ``n`` images: ground truth green, predictions (score ≥ min_score) red."""
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    tiles = []
    for i in range(min(n, len(dataset))):
        img = torch.from_numpy(np.array(dataset.image_array(i))).permute(2, 0, 1)
        scale = max(1, 256 // max(img.shape[1:]))
        img = torch.nn.functional.interpolate(img[None].float(), scale_factor=scale, mode="nearest")[0].byte()
        gt = dataset.target(i)
        if len(gt["boxes"]):
            img = draw_bounding_boxes(img, gt["boxes"] * scale, colors="lime", width=1)
        keep = preds[i]["scores"] >= min_score
        names = [f"{dataset.classes[int(c)]} {s:.2f}" for c, s in zip(preds[i]["labels"][keep], preds[i]["scores"][keep])]
        if names:
            img = draw_bounding_boxes(img, preds[i]["boxes"][keep] * scale, labels=names, colors="red", width=2)
        tiles.append(img.permute(1, 2, 0).numpy())
    height = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, axis=1)).save(path)
    return path


@register_suite("clean@detection")
def clean_detection_suite(ctx: EvalContext):
    def compute() -> list[Cell]:
        ds = as_detection_dataset(ctx.dataset)
        preds = predict_detections(ctx.model, ds, ctx.batch_size, ctx.device, desc="clean")
        figure = draw_detections(ds, preds, ctx.out_dir / "figures" / "detections_clean.png")
        stats = coco_map(ds.coco_ground_truth(), coco_detections(preds))
        return map_cells("clean", "clean", stats, len(ds), figure=str(figure.relative_to(ctx.out_dir)))

    yield "clean", compute
