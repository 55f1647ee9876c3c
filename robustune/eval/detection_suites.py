"""Detection suites beyond ``clean``: ``corruptions`` (COCO-C style, mPC / rPC), ``rtts``, ``exdark``.

See :mod:`robustune.eval.detection` for the cells and options.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from robustune.corruptions.registry import COMMON_CORRUPTIONS
from robustune.eval.detection import (
    as_detection_dataset,
    coco_detections,
    coco_map,
    map_cells,
    predict_detections,
)
from robustune.eval.results import Cell, EvalResults
from robustune.eval.ood_suites import corruption_key, corruption_root, selected_cells
from robustune.eval.suites import EvalContext, register_suite

log = logging.getLogger(__name__)
SUITE = "corruptions"


def corrupted_cell_dataset(root: Path, corruption: str, severity: int):
    from robustune.data.detection_formats import coco

    ann = root / "annotations.json"
    if not ann.is_file():
        raise FileNotFoundError(f"{ann} does not exist: {root} is not a corrupted detection set "
                                "(make one with `robustune corrupt <detection dataset> --out DIR`)")
    return coco(root=str(root), ann_file=str(ann), img_dir=str(root / corruption / str(severity)))


def performance_under_corruption(results: EvalResults) -> list[Cell]:
    """mPC (mean over corruptions of the mean mAP over severities) and rPC = mPC / clean mAP."""
    per: dict[str, list[float]] = {}
    for key, cell in results.cells.items():
        if cell.suite == SUITE and cell.metric == "mAP" and key.count("/") == 2:
            per.setdefault(cell.details["corruption"], []).append(cell.value)
    if not per:
        return []
    means = {c: sum(v) / len(v) for c, v in per.items()}
    mpc = sum(means.values()) / len(means)
    n_cells = sum(len(v) for v in per.values())
    complete = set(COMMON_CORRUPTIONS) <= set(per) and all(len(per[c]) == 5 for c in COMMON_CORRUPTIONS)
    details = {"corruptions": sorted(per), "n_cells": n_cells, "complete": complete,
               "per_corruption_mAP": means}
    cells = [Cell(key=f"{SUITE}/mPC", suite=SUITE, metric="mPC", value=mpc, details=details)]
    clean = results.cells.get("clean")
    if clean is not None and clean.metric == "mAP":
        if clean.value > 0:
            cells.append(Cell(key=f"{SUITE}/rPC", suite=SUITE, metric="rPC", value=mpc / clean.value,
                              details={**details, "clean_mAP": clean.value}))
        else:
            log.warning("clean mAP is 0: rPC = mPC / clean mAP is undefined and not written")
    else:
        log.info("no clean mAP cell: rPC needs `--suite clean,corruptions`")
    return cells


@register_suite(f"{SUITE}@detection")
def corruptions_detection_suite(ctx: EvalContext):
    root = corruption_root(ctx, "made by `robustune corrupt <detection dataset> --out DIR`")
    for corruption, severities in selected_cells(root, ctx.options).items():
        for severity in severities:
            key = corruption_key(corruption, severity)

            def compute(c: str = corruption, s: int = severity, key: str = key) -> list[Cell]:
                ds = corrupted_cell_dataset(root, c, s)
                preds = predict_detections(ctx.model, ds, ctx.batch_size, ctx.device, desc=key)
                stats = coco_map(ds.coco_ground_truth(), coco_detections(preds))
                cells = map_cells(key, SUITE, stats, len(ds), corruption=c, severity=s, root=str(root))
                return cells[:1]  # the mAP cell; the other stats stay in its details

            yield key, compute
    yield f"{SUITE}/summary", lambda: performance_under_corruption(ctx.results)


def _class_map(model_classes: list[str], target_classes: list[str], mapping: dict[str, str]) -> dict[int, int]:
    out = {}
    for i, name in enumerate(model_classes):
        target = mapping.get(name, name)
        if target in target_classes:
            out[i] = target_classes.index(target)
    if not out:
        raise ValueError(f"none of the detector's classes ({model_classes[:8]}...) maps to {target_classes}: "
                         "pass --option category_map=<json file> (model class name -> target class name)")
    return out


def ood_detection_cells(ctx: EvalContext, name: str, default_map: str) -> list[Cell]:
    """mAP on an OOD detection set, the detector's classes mapped by name to the set's classes."""
    from robustune.data import create_dataset
    from robustune.data.detection_formats import load_category_map

    root = ctx.options.get(f"{name}_root")
    if not root:
        raise ValueError(f"the {name} suite needs --option {name}_root=DIR")
    ds = as_detection_dataset(create_dataset(name, str(ctx.options.get(f"{name}_split", "all")), root=str(root)))
    spec = ctx.options.get("category_map", default_map)
    mapping = {} if spec == "none" else load_category_map(str(spec))
    classes = ctx.classes or [str(i) for i in range(getattr(ctx.model, "num_classes", 0))]
    index = _class_map(classes, ds.classes, mapping)
    preds = predict_detections(ctx.model, ds, ctx.batch_size, ctx.device, desc=name)
    lut = torch.full((len(classes),), -1, dtype=torch.int64)
    for i, j in index.items():
        lut[i] = j
    for p in preds:
        labels = lut[p["labels"]]
        keep = labels >= 0
        p["boxes"], p["scores"], p["labels"] = p["boxes"][keep], p["scores"][keep], labels[keep]
    stats = coco_map(ds.coco_ground_truth(), coco_detections(preds))
    mapped = {classes[i]: ds.classes[j] for i, j in index.items()}
    return map_cells(name, name, stats, len(ds), root=str(root), class_map=mapped)


@register_suite("rtts")
def rtts_suite(ctx: EvalContext):
    yield "rtts", lambda: ood_detection_cells(ctx, "rtts", "coco_to_rtts")


@register_suite("exdark")
def exdark_suite(ctx: EvalContext):
    yield "exdark", lambda: ood_detection_cells(ctx, "exdark", "coco_to_exdark")


rtts_suite.tasks = exdark_suite.tasks = ("detection",)
