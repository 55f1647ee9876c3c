"""robustune's COCO mAP equals pycocotools' own run on hand-written COCO files of the same boxes."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from robustune.data.detection import DetectionDataset, ImageRecord, finish_record
from robustune.eval.detection import STAT_NAMES, coco_detections, coco_map


def _records():
    # image 0: two objects of class 0 and one of class 1; image 1: one class-1 object (no detections);
    # image 2: a small class-0 object. Class 2 ("kite") has no ground truth at all.
    spec = [([[10, 10, 60, 50], [70, 20, 120, 90], [5, 60, 45, 95]], [0, 0, 1]),
            ([[20, 20, 80, 80]], [1]),
            ([[30, 30, 40, 38]], [0])]
    out = []
    for i, (boxes, labels) in enumerate(spec):
        rec, _ = finish_record(ImageRecord(file=f"{i}.png", width=128, height=100,
                                           boxes=np.array(boxes, np.float32), labels=np.array(labels)), "hand")
        out.append(rec)
    return out


def _predictions():
    t = torch.tensor
    return [
        {"boxes": t([[12, 11, 58, 52], [70, 25, 118, 85], [0, 0, 30, 30], [6, 58, 44, 96], [60, 10, 100, 60]]),
         "scores": t([0.9, 0.8, 0.7, 0.6, 0.3]), "labels": t([0, 0, 0, 1, 2])},
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)},
        {"boxes": t([[29, 31, 41, 37], [50, 50, 90, 90]]), "scores": t([0.55, 0.95]), "labels": t([0, 1])},
    ]


def _pycocotools_direct(tmp_path):
    """The same boxes written by hand as COCO json (xywh, arbitrary category ids) and run through COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cat_ids = [5, 9, 12]  # person, car, kite
    anns, aid = [], 1
    for i, rec in enumerate(_records()):
        for b, c in zip(rec.boxes.tolist(), rec.labels.tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": aid, "image_id": 100 + i, "category_id": cat_ids[c], "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
            aid += 1
    gt = {"images": [{"id": 100 + i, "width": 128, "height": 100, "file_name": f"{i}.png"} for i in range(3)],
          "annotations": anns, "categories": [{"id": c, "name": n} for c, n in zip(cat_ids, ["person", "car", "kite"])]}
    dets = [{"image_id": 100 + i, "category_id": cat_ids[c], "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for i, p in enumerate(_predictions())
            for b, s, c in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist())]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_map_equals_pycocotools_on_hand_built_boxes(tmp_path):
    ds = DetectionDataset(_records(), ["person", "car", "kite"], check_files=False)
    ours = coco_map(ds.coco_ground_truth(), coco_detections(_predictions()))
    ref = _pycocotools_direct(tmp_path)
    for name, value in zip(STAT_NAMES, ref):
        assert (ours[name] is None) == (value < 0), name
        if value >= 0:
            assert ours[name] == pytest.approx(float(value), abs=1e-12), name
    assert 0 < ours["mAP"] < 1
    # a class without ground truth is left out of the mean: kite's false positive changes nothing
    preds = _predictions()
    preds[0] = {k: v[:4] for k, v in preds[0].items()}
    assert coco_map(ds.coco_ground_truth(), coco_detections(preds))["mAP"] == pytest.approx(ours["mAP"])


def test_no_detections_at_all_scores_zero():
    ds = DetectionDataset(_records(), ["person", "car", "kite"], check_files=False)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}] * 3
    gt = ds.coco_ground_truth()
    stats = coco_map(gt, coco_detections(empty))
    assert stats["mAP"] == 0.0 and stats["AP50"] == 0.0
    # An area range without ground truth has no value (COCOeval's -1), as with detections present.
    far = [{"boxes": torch.tensor([[0.0, 0.0, 1.0, 1.0]]), "scores": torch.tensor([0.01]),
            "labels": torch.tensor([2])}] + empty[1:]
    with_one = coco_map(gt, coco_detections(far))  # one false positive of a class without ground truth
    assert {k: v is None for k, v in stats.items()} == {k: v is None for k, v in with_one.items()}
    assert all(v in (0.0, None) for v in stats.values())
