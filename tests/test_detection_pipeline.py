"""Detection through the CLI: train the digits presets (with exact resume), corrupt, eval, report."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from robustune.cli import main
from robustune.config import load_config
from robustune.engine import train
from robustune.engine.checkpoint import list_checkpoints
from robustune.methods import METHODS

TINY = ["model.init_from=null", "data.options.n_images=4", "data.options.canvas=48", "data.batch_size=2",
        "data.eval_batch_size=4", "train.epochs=2", "train.eval_every=0", "train.log_every=1"]


def test_gfn_det_resume_matches_uninterrupted(tmp_path, crash_at_step):
    cfg = load_config("configs/det_gfn_digits.yaml", TINY + ["method.params.similarity_source=head_weights"])
    train(cfg, tmp_path / "full")
    crash_at_step(cfg, tmp_path / "cut", METHODS.get("gfn_det"), 3)  # mid-epoch 2 (2 steps per epoch)
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["epoch_0000"]
    train(cfg, tmp_path / "cut", resume=True)
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss_classifier", "loss_box_reg", "loss_objectness"} <= set(logs[0])
    assert "train_acc" not in logs[-1] and logs[-1]["train_loss"] > 0


@pytest.mark.parametrize("method,passes", [("det_finetune", 1), ("det_adv", 2), ("gfn_det", 2)])
def test_detection_steps_count_their_passes(tmp_path, method, passes):
    """gfn_det's perturbation runs an opened-up R-CNN pass (not the detector's forward): counted on
    the backbone like every other detection pass, so compare sees its real cost (was 0)."""
    params = {"det_finetune": "method.params={}", "det_adv": "method.params={eta: 0.02}",
              "gfn_det": "method.params.similarity_source=head_weights"}[method]
    cfg = load_config("configs/det_gfn_digits.yaml", TINY + [f"method.name={method}", params, "train.epochs=1"])
    train(cfg, tmp_path / "run")
    compute = json.loads((tmp_path / "run" / "run.json").read_text())["compute"]
    assert compute["forward_passes_per_step"] == passes and compute["backward_passes_per_step"] == passes


def _cli(*args):
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert exc.code in (0, None), f"robustune {' '.join(map(str, args))} exited with {exc.code}"


def test_train_corrupt_eval_report_two_detectors(tmp_path):
    sets = [x for t in TINY + ["train.epochs=1"] for x in ("--set", t)]
    runs = {"plain": tmp_path / "plain", "adv": tmp_path / "adv"}
    _cli("train", "configs/det_frcnn_digits.yaml", *sets, "--set", "train.eval_every=1", "--out", runs["plain"])
    _cli("train", "configs/det_adv_digits.yaml", *sets, "--out", runs["adv"])
    metrics = [json.loads(line) for line in (runs["plain"] / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= metrics[-1]["val_mAP"] <= 1

    corrupted = tmp_path / "digits_det-c"
    _cli("corrupt", "digits_det", "--out", corrupted, "--corruptions", "gaussian_noise,fog", "--severities", "1,5",
         "--option", "n_images=4", "--option", "canvas=48")
    ann = json.loads((corrupted / "annotations.json").read_text())
    assert len(ann["images"]) == 4 and (corrupted / "fog" / "5" / ann["images"][0]["file_name"]).is_file()

    for run in runs.values():
        _cli("eval", run, "--suite", "clean,corruptions", "--option", f"corruption_root={corrupted}")
    res = json.loads((runs["plain"] / "eval" / "results.json").read_text())["cells"]
    assert res["clean"]["metric"] == "mAP" and 0 <= res["clean"]["value"] <= 1
    sev = [res[f"corruptions/{c}/{s}"]["value"] for c in ("gaussian_noise", "fog") for s in (1, 5)]
    mpc = (sum(sev[:2]) / 2 + sum(sev[2:]) / 2) / 2
    assert res["corruptions/mPC"]["value"] == pytest.approx(mpc)
    if res["clean"]["value"] > 0:
        assert res["corruptions/rPC"]["value"] == pytest.approx(mpc / res["clean"]["value"])
    assert (runs["plain"] / "eval" / "figures" / "detections_clean.png").is_file()
    # COCO results JSON of every cell, with the ground truth they refer to: pycocotools reproduces mAP
    from robustune.eval.detection import coco_map

    coco = runs["plain"] / "eval" / "coco_results"
    gt = json.loads((coco / "clean.ground_truth.json").read_text())
    for key, name in (("clean", "clean"), ("corruptions/fog/5", "corruptions_fog_5")):
        dets = json.loads((coco / f"{name}.json").read_text())
        assert all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in dets)
        assert coco_map(gt, dets)["mAP"] == pytest.approx(res[key]["value"])
    before = (runs["plain"] / "eval" / "results.json").read_text()
    _cli("eval", runs["plain"], "--suite", "clean,corruptions", "--option", f"corruption_root={corrupted}")
    assert json.loads(before)["cells"] == json.loads((runs["plain"] / "eval" / "results.json").read_text())["cells"]

    from robustune.eval.suites import task_suite

    with pytest.raises(ValueError, match="'pgd' suite does not apply to a detection model; valid: clean, "
                                         "corruptions, exdark, foggy_cityscapes, rtts"):
        task_suite("pgd", type("D", (), {"task": "detection"})())
    with pytest.raises(ValueError, match="'rtts' suite does not apply to a classification model"):
        task_suite("rtts", torch.nn.Linear(1, 1))

    _cli("report", runs["plain"], runs["adv"], "--out", tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "Detection (COCO mAP, pycocotools)" in html and "det_frcnn_digits" in html and "det_adv_digits" in html
    assert "mAP vs corruption severity" in html and "det_adv_digits: detections on clean images" in html
    assert html.count("data:image/png;base64") == 3  # the plot + one image strip per detector
    assert "clean top-1" not in html  # detectors stay out of the classifier tables
