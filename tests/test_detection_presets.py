"""The GPU presets (COCO, ViT-B/16 Faster R-CNN) run as-is on a fake COCO with random init, one
step each, and the RTTS / ExDark suites evaluate a COCO-trained detector on fake sets of their layouts."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from robustune.cli import main
from robustune.config import load_config
from robustune.engine import train
from robustune.runs.build import build_run

CATS = [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def _fake_coco(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
        images, anns = [], []
        for i in range(2):
            name = f"{split}_{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / f"{split}2017" / name)
            images.append({"id": i + 1, "file_name": name, "width": 128, "height": 96})
            for j, cat in enumerate(CATS[2 * i: 2 * i + 2]):
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat["id"],
                             "bbox": [10 + 50 * j, 20, 40, 50], "area": 2000.0, "iscrowd": 0})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": CATS}))


def _fake_rtts_and_exdark(root):
    (root / "rtts" / "Annotations").mkdir(parents=True)
    (root / "rtts" / "JPEGImages").mkdir()
    Image.fromarray(np.full((96, 128, 3), 180, np.uint8)).save(root / "rtts" / "JPEGImages" / "f1.png")
    (root / "rtts" / "Annotations" / "f1.xml").write_text(
        "<annotation><filename>f1.png</filename><size><width>128</width><height>96</height></size>"
        "<object><name>car</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax>"
        "<ymax>70</ymax></bndbox></object></annotation>")
    (root / "exdark" / "ExDark" / "People").mkdir(parents=True)
    (root / "exdark" / "ExDark_Annno" / "People").mkdir(parents=True)
    Image.fromarray(np.full((96, 128, 3), 20, np.uint8)).save(root / "exdark" / "ExDark" / "People" / "d1.jpg")
    (root / "exdark" / "ExDark_Annno" / "People" / "d1.jpg.txt").write_text(
        "% bbGt version=3\nPeople 10 20 40 50 0 0 0 0 0 0 0\nDog 60 20 40 50 0 0 0 0 0 0 0\n")


def test_coco_presets_one_step_and_rtts_exdark_suites(tmp_path):
    _fake_coco(tmp_path / "coco")
    small = [f"data.root={tmp_path / 'coco'}", "model.init_from=null", "model.weights=null",
             "model.kwargs.min_size=64", "model.kwargs.max_size=96", "data.batch_size=2", "data.eval_batch_size=2",
             "data.num_workers=0", "data.pin_memory=false", "train.precision=fp32", "train.epochs=1",
             "train.eval_every=0"]
    plain = load_config("configs/det_frcnn_vit_b16_coco.yaml", small)  # det_finetune: steps tested on digits
    method, splits = build_run(plain)
    assert method.model.detector.backbone.trunk.patch_embed.patch_size == (16, 16) and len(splits.train) == 2
    assert method.model.num_classes == 4 and splits.classes == ["person", "bicycle", "car", "dog"]
    del method
    cfg = load_config("configs/det_gfn_vit_b16_coco.yaml", small)
    run = train(cfg, tmp_path / "gfn").run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1 and rows[-1]["train_loss"] > 0
    assert (run / "similarity.json").is_file()  # from the features of the ground-truth boxes

    _fake_rtts_and_exdark(tmp_path)
    try:
        main(["eval", str(run), "--suite", "rtts,exdark", "--split", "val",
              "--option", f"rtts_root={tmp_path / 'rtts'}", "--option", f"exdark_root={tmp_path / 'exdark'}"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    cells = json.loads((run / "eval" / "results.json").read_text())["cells"]
    assert cells["rtts"]["metric"] == "mAP" and 0 <= cells["rtts"]["value"] <= 1
    assert cells["rtts"]["details"]["class_map"] == {"person": "person", "bicycle": "bicycle", "car": "car"}
    assert cells["exdark"]["details"]["class_map"] == {"person": "People", "bicycle": "Bicycle", "car": "Car",
                                                       "dog": "Dog"}
