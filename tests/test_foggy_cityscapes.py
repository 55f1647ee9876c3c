"""The Cityscapes paper preset runs one step on the fake official tree (random init), and the
``foggy_cityscapes`` suite evaluates that run per fog level and averaged, into the report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from test_data_cityscapes import make_tree
from torch import nn

from robustune.cli import main
from robustune.config import EvalConfig, load_config
from robustune.data import create_dataset
from robustune.data.cityscapes import CITYSCAPES_CLASSES
from robustune.engine import train
from robustune.eval import evaluate
from robustune.eval.foggy_cityscapes import foggy_root, label_index, selected_betas

SMALL = ["model.init_from=null", "model.weights=null", "model.kwargs.min_size=64", "model.kwargs.max_size=128",
         "data.batch_size=2", "data.eval_batch_size=2", "data.num_workers=0", "data.pin_memory=false",
         "train.precision=fp32", "train.epochs=1", "train.eval_every=0"]


def _cli(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"robustune {' '.join(map(str, args))} exited with {exc.code}"


def test_cityscapes_preset_one_step_then_foggy_suite_and_report(tmp_path):
    root = make_tree(tmp_path / "cityscapes")
    cfg = load_config("configs/det_gfn_vit_b16_cityscapes.yaml", [f"data.root={root}"] + SMALL)
    run = train(cfg, tmp_path / "run").run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 1 and rows[-1]["train_loss"] > 0  # 2 training images, batch 2
    assert json.loads((run / "run.json").read_text())["classes"] == CITYSCAPES_CLASSES

    _cli("eval", run, "--suite", "foggy_cityscapes", "--option", f"root={root}")  # the spelling
    cells = json.loads((run / "eval" / "results.json").read_text())["cells"]
    per = [cells[f"foggy_cityscapes/beta={b}"] for b in (0.005, 0.01, 0.02)]
    assert all(c["metric"] == "mAP" and c["n"] == 2 and 0 <= c["value"] <= 1 for c in per)
    mean = cells["foggy_cityscapes"]
    assert mean["value"] == pytest.approx(sum(c["value"] for c in per) / 3)
    assert mean["details"]["complete"] and mean["details"]["betas"] == [0.005, 0.01, 0.02]
    assert cells["foggy_cityscapes/AP50"]["value"] == pytest.approx(
        sum(cells[f"foggy_cityscapes/beta={b}/AP50"]["value"] for b in (0.005, 0.01, 0.02)) / 3)

    # One level only, the root taken from the run's data.root (a cityscapes run); then the report.
    _cli("eval", run, "--suite", "clean,foggy_cityscapes", "--option", "foggy_cityscapes_beta=0.02",
         "--out", tmp_path / "eval02")
    one = json.loads((tmp_path / "eval02" / "results.json").read_text())["cells"]
    assert sorted(k for k in one if k.startswith("foggy_cityscapes/beta=") and k.count("/") == 1) == \
        ["foggy_cityscapes/beta=0.02"]
    assert one["foggy_cityscapes"]["value"] == one["foggy_cityscapes/beta=0.02"]["value"]
    assert not one["foggy_cityscapes"]["details"]["complete"] and one["clean"]["n"] == 2

    _cli("report", run, "--out", tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Foggy-Cityscapes mAP (%)" in html and "Foggy-Cityscapes: mAP per fog level β" in html
    assert "mAP β=0.005" in html and "AP50 mean" in html


class FogOracle(nn.Module):
    """A stand-in detector with known mAP: every non-crowd ground-truth box (score 1) of the image
    in light fog, nothing in thick fog. Fog t is measured against the clean image (make_tree's blend
    towards grey 200: t = 0.39, 0.63, 0.86 at beta = 0.005, 0.01, 0.02); images come in dataset order."""

    task = "detection"
    num_classes = len(CITYSCAPES_CLASSES)

    def __init__(self, clean):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # a state to fingerprint
        self.clean, self.calls = clean, 0

    def forward(self, images):
        out = []
        for x in images:
            i = self.calls % len(self.clean)
            self.calls += 1
            c = torch.from_numpy(self.clean.image_array(i).copy()).permute(2, 0, 1).float() / 255
            fog = ((x - c).mean() / (200 / 255 - c).mean()).item()
            gt = self.clean.target(i)
            keep = (gt["iscrowd"] == 0) & (fog < 0.75)
            out.append({"boxes": gt["boxes"][keep], "scores": torch.ones(int(keep.sum())),
                        "labels": gt["labels"][keep]})
        return out


def test_suite_reports_each_level_and_their_mean(tmp_path):
    root = make_tree(tmp_path / "cityscapes")
    clean = create_dataset("cityscapes", "val", root=str(root))
    res = evaluate(FogOracle(clean), clean, EvalConfig(suites=["foggy_cityscapes"], split="val"), tmp_path / "eval",
                   classes=CITYSCAPES_CLASSES, dataset_info={"name": "cityscapes", "root": str(root), "split": "val"})
    values = {k: c.value for k, c in res.cells.items() if c.metric in ("mAP", "AP50")}
    assert values == {"foggy_cityscapes/beta=0.005": 1.0, "foggy_cityscapes/beta=0.005/AP50": 1.0,
                      "foggy_cityscapes/beta=0.01": 1.0, "foggy_cityscapes/beta=0.01/AP50": 1.0,
                      "foggy_cityscapes/beta=0.02": 0.0, "foggy_cityscapes/beta=0.02/AP50": 0.0,
                      "foggy_cityscapes": pytest.approx(2 / 3), "foggy_cityscapes/AP50": pytest.approx(2 / 3)}
    mean = res.cells["foggy_cityscapes"]
    assert mean.details["per_beta"] == {"0.005": 1.0, "0.01": 1.0, "0.02": 0.0} and mean.details["complete"]
    assert res.cells["foggy_cityscapes/beta=0.02"].details["root"] == str(root)  # the run's data.root


def test_suite_options_and_class_checks(tmp_path):
    assert selected_betas({}) == [0.005, 0.01, 0.02]
    assert selected_betas({"foggy_cityscapes_beta": "0.02,0.005"}) == [0.005, 0.02]
    assert selected_betas({"foggy_cityscapes_beta": [0.01]}) == [0.01]
    with pytest.raises(ValueError, match="beta '0.5' is not one of"):
        selected_betas({"foggy_cityscapes_beta": "0.5"})

    def run_of(dataset, **options):
        return SimpleNamespace(options=options, results=SimpleNamespace(dataset=dataset))

    assert foggy_root(run_of({"name": "digits_det"}, root="/x")) == "/x"
    assert foggy_root(run_of({"name": "digits_det"}, root="/x", foggy_cityscapes_root="/y")) == "/y"
    assert foggy_root(run_of({"name": "cityscapes", "root": "/c"})) == "/c"
    with pytest.raises(ValueError, match=r"needs --option root=DIR \(or foggy_cityscapes_root=DIR\)"):
        foggy_root(run_of({"name": "digits_det"}))

    def ctx(classes, **options):
        return SimpleNamespace(classes=classes, options=options, model=None)

    assert label_index(ctx(CITYSCAPES_CLASSES), CITYSCAPES_CLASSES) == ({i: i for i in range(8)}, 8)
    with pytest.raises(ValueError, match=r"not Foggy-Cityscapes' .* \(missing \['rider'.*extra \['dog'\]\)"):
        label_index(ctx(["person", "car", "dog"]), CITYSCAPES_CLASSES)
    with pytest.raises(ValueError, match="same names in another order"):
        label_index(ctx(CITYSCAPES_CLASSES[::-1]), CITYSCAPES_CLASSES)
    mapping = tmp_path / "coco_to_cityscapes.json"
    mapping.write_text(json.dumps({"mapping": {"motorbike": "motorcycle"}}))
    index, n = label_index(ctx(["person", "dog", "motorbike"], foggy_cityscapes_category_map=str(mapping)),
                           CITYSCAPES_CLASSES)
    assert index == {0: 0, 2: 6} and n == 3  # by name; dog has no Cityscapes class and is dropped
