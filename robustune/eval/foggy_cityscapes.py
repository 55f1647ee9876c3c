"""The ``foggy_cityscapes`` suite: a detector trained on clean Cityscapes, tested in fog (GFN Table 2).

GFN Sec. 4.3 trains on clean Cityscapes and reports one Foggy-Cityscapes mAP. Foggy-Cityscapes has
three fog levels (β = 0.005, 0.01, 0.02); which the paper used is not said. **Our reading**: each
level is evaluated apart and the paper's single number is their mean (equal weights); the
domain-adaptation literature often reports β = 0.02 alone, which is the ``beta=0.02`` cell.

Cells (detection, COCO mAP by pycocotools as every detection suite):

- ``foggy_cityscapes/beta=<β>`` (mAP = AP@[.5:.95]) and ``.../AP50``, ``.../AP75``, ``.../APs|m|l``;
- ``foggy_cityscapes`` (mAP) and ``foggy_cityscapes/AP50``: the mean over the β cells stored, with
  ``details.per_beta`` and ``details.complete`` (all three levels present); recomputed from the
  stored cells on every run, like ``corruptions/mPC``.

Options (``robustune eval RUN --suite foggy_cityscapes --option KEY=VALUE``):

- ``root`` or ``foggy_cityscapes_root`` (the longer name wins): the folder with ``leftImg8bit_foggy/``
  and ``gtFine/``; default the run's ``data.root`` when the run was trained on ``cityscapes``;
- ``foggy_cityscapes_split`` (``val``); ``foggy_cityscapes_beta``: one level or a list (default all);
- ``foggy_cityscapes_category_map``: a json (detector class name → Cityscapes class name) for a
  detector with other classes (e.g. a COCO one); without it the detector's class list must be
  Cityscapes' eight classes in order (``robustune.data.cityscapes.CITYSCAPES_CLASSES``).
"""

from __future__ import annotations

from typing import Any

from robustune.data.cityscapes import FOGGY_BETAS, parse_beta
from robustune import distributed as dist
from robustune.eval.detection import (as_detection_dataset, coco_detections, coco_map, map_cells, predict_detections,
                                      save_coco_results)
from robustune.eval.detection_suites import class_map, relabel_predictions
from robustune.eval.results import Cell, EvalResults
from robustune.eval.suites import EvalContext, register_suite

SUITE = "foggy_cityscapes"


def beta_key(beta: float) -> str:
    return f"{SUITE}/beta={beta}"


def selected_betas(options: dict[str, Any]) -> list[float]:
    """The fog levels to evaluate: ``foggy_cityscapes_beta`` (one, a list or ``a,b``), default all three."""
    spec = options.get(f"{SUITE}_beta", "all")
    if spec in (None, "all"):
        return list(FOGGY_BETAS)
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    return sorted({parse_beta(str(b).strip()) for b in items if str(b).strip()})


def foggy_root(ctx: EvalContext) -> str:
    """``--option foggy_cityscapes_root=DIR`` or ``--option root=DIR``; else a cityscapes run's data.root."""
    root = ctx.options.get(f"{SUITE}_root") or ctx.options.get("root")
    if root:
        return str(root)
    if ctx.results.dataset.get("name") == "cityscapes" and ctx.results.dataset.get("root"):
        return str(ctx.results.dataset["root"])
    raise ValueError(f"the {SUITE} suite needs --option root=DIR (or {SUITE}_root=DIR): the folder that holds "
                     "leftImg8bit_foggy/ and gtFine/ (the run's data.root is used when it was trained on cityscapes)")


def label_index(ctx: EvalContext, target_classes: list[str]) -> tuple[dict[int, int], int]:
    """(model label → Cityscapes label, number of model classes); the class lists checked first."""
    from robustune.data.detection_formats import load_category_map

    classes = ctx.classes or [str(i) for i in range(getattr(ctx.model, "num_classes", 0))]
    spec = ctx.options.get(f"{SUITE}_category_map")
    if spec:
        return class_map(classes, target_classes, load_category_map(str(spec))), len(classes)
    if classes != target_classes:
        missing = [c for c in target_classes if c not in classes]
        extra = [c for c in classes if c not in target_classes]
        detail = (f"missing {missing}, extra {extra[:8]}" if missing or extra else "same names in another order")
        raise ValueError(f"the detector's classes are not Foggy-Cityscapes' {target_classes} ({detail}): "
                         f"train on cityscapes, or pass --option {SUITE}_category_map=FILE.json "
                         "(detector class -> Cityscapes class)")
    return {i: i for i in range(len(classes))}, len(classes)


def beta_cells(ctx: EvalContext, root: str, split: str, beta: float) -> list[Cell]:
    """mAP (and AP50, AP75, APs/m/l) of the detector on Foggy-Cityscapes at fog level ``beta``."""
    from robustune.data import create_dataset

    ds = as_detection_dataset(create_dataset(SUITE, split, root=root, beta=beta))
    index, n_classes = label_index(ctx, ds.classes)
    preds = relabel_predictions(predict_detections(ctx.model, ds, ctx.batch_size, ctx.device, desc=beta_key(beta),
                                                   precision=ctx.precision),
                                index, n_classes)
    gt, dets = ds.coco_ground_truth(), coco_detections(preds)
    if dist.is_main_process():  # rank 0 writes the results folder; every fog level has the same boxes
        save_coco_results(ctx.out_dir, beta_key(beta), dets, gt, f"{SUITE}_{split}")
    stats = coco_map(gt, dets)
    return map_cells(beta_key(beta), SUITE, stats, len(ds), beta=beta, root=root, split=split)


def foggy_mean(results: EvalResults) -> list[Cell]:
    """Mean over the stored β cells of mAP and of AP50 (our reading of the paper's single number)."""
    per_beta = {c.details["beta"]: c for c in results.cells.values()
                if c.suite == SUITE and c.metric == "mAP" and "beta" in c.details}
    out = []
    for metric, key in (("mAP", SUITE), ("AP50", f"{SUITE}/AP50")):
        cells = {b: c if metric == "mAP" else results.cells.get(f"{beta_key(b)}/AP50") for b, c in per_beta.items()}
        values = {b: c.value for b, c in sorted(cells.items()) if c is not None}
        if not values:
            continue
        out.append(Cell(key=key, suite=SUITE, metric=metric, value=sum(values.values()) / len(values),
                        n=next(iter(per_beta.values())).n,
                        details={"per_beta": {str(b): v for b, v in values.items()}, "betas": list(values),
                                 "complete": set(values) == set(FOGGY_BETAS),
                                 "mean_of": f"{metric} per fog level, equal weights (our reading)"}))
    return out


@register_suite(SUITE)
def foggy_cityscapes_suite(ctx: EvalContext):
    root = foggy_root(ctx)
    split = str(ctx.options.get(f"{SUITE}_split", "val"))
    for beta in selected_betas(ctx.options):
        yield beta_key(beta), lambda b=beta: beta_cells(ctx, root, split, b)
    yield f"{SUITE}/summary", lambda: foggy_mean(ctx.results)


foggy_cityscapes_suite.tasks = ("detection",)
# what its numbers depend on (robustune.eval.store): its own images, not the evaluated split's subset
foggy_cityscapes_suite.number_options = ("root", f"{SUITE}_root", f"{SUITE}_split", f"{SUITE}_category_map")
foggy_cityscapes_suite.uses_seed = foggy_cityscapes_suite.uses_subset = False
