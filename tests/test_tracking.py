"""Tracking (--report-to): TensorBoard event files read back, the W&B offline run folder, and
nothing at all without report_to."""

from __future__ import annotations

import json

import pytest

from robustune.engine.metrics import read_metrics


def _train(run, report_to):
    from robustune.config import load_config
    from robustune.engine import train

    cfg = load_config(None, ["model.name=small_cnn", "method.name=pgd_at", "method.params.steps=1",
                             "train.max_steps=3", "train.epochs=1", "train.log_every=1", "data.batch_size=16",
                             f"train.report_to=[{','.join(report_to)}]"])
    train(cfg, run)
    return read_metrics(run / "metrics.jsonl")


def _event_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_tensorboard_and_wandb_offline_get_every_training_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    rows = _train(run, ["tensorboard", "wandb"])
    scalars = _event_scalars(run / "tensorboard")
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:  # every logged number, at its step, as TensorBoard reads it back (float32)
        assert scalars["train/loss"][r["step"]] == pytest.approx(r["loss"], rel=1e-6)
        assert scalars["train/lr"][r["step"]] == pytest.approx(r["lr"], rel=1e-6)
    end = rows[-1]
    for key in ("train_loss", "train_acc", "val_acc"):
        assert scalars[f"train/{key}"][3] == pytest.approx(end[key], rel=1e-6)
    # W&B offline: one run folder under RUN/wandb/ whose log holds the same keys and values
    (folder,) = (run / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    data = log.read_bytes()
    for r in steps:
        assert json.dumps(r["loss"]).encode() in data
    assert b"train/loss" in data and b"train/val_acc" in data and b"small_cnn" in data  # the config too


def test_without_report_to_nothing_changes(tmp_path):
    run = tmp_path / "run"
    _train(run, [])
    assert not (run / "tensorboard").exists() and not (run / "wandb").exists()
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == [
        "config.yaml", "metrics.jsonl", "model.safetensors", "run.json"]  # 3 steps: no epoch checkpoint


def test_unknown_tracker_stops_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="valid: tensorboard, wandb"):
        _train(tmp_path / "run", ["tensorbord"])
    assert not (tmp_path / "run").exists()


def test_eval_report_to_writes_the_cells_as_summaries(tmp_path, trained_tiny_run):
    from robustune.cli import main

    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(trained_tiny_run), "--suite", "clean", "--n-examples", "30", "--out", str(out),
              "--report-to", "tensorboard"])
    assert exc.value.code in (0, None)
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert _event_scalars(out / "tensorboard")["eval/clean"][0] == pytest.approx(cells["clean"]["value"])
