import json

import pytest
import torch
from safetensors.torch import load_file

from robustune.config import ConfigError, load_config
from robustune.engine import TrainingDivergedError, train
from robustune.engine.checkpoint import list_checkpoints
from robustune.methods import METHODS

FAST = ["data.train_subset=96", "data.batch_size=32", "train.epochs=3", "train.eval_every=0",
        "train.log_every=1", "model.name=small_cnn"]


def _weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


RESUME_CASES = {
    "erm": (None, FAST + ["method.name=erm"]),
    "gfn": (None, FAST + ["method.name=gfn", "method.params={k: 3, eta: 0.05}"]),
    "fap": ("configs/clip_tiny_digits_fap.yaml",
            ["data.shots=5", "data.batch_size=8", "train.epochs=3", "train.eval_every=0", "train.log_every=1"]),
}


@pytest.mark.parametrize("method", list(RESUME_CASES))
def test_resume_after_interruption_matches_uninterrupted(tmp_path, crash_at_step, method):
    path, overrides = RESUME_CASES[method]
    cfg = load_config(path, overrides)
    train(cfg, tmp_path / "full")
    crash_at_step(cfg, tmp_path / "cut", METHODS.get(method), 4)  # mid-epoch 2 (3 steps per epoch)
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["epoch_0000"]
    train(cfg, tmp_path / "cut", resume=True)

    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(l)["step"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    full_steps = [json.loads(l)["step"] for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert steps == full_steps  # no duplicated records from the replayed epoch


def test_run_folder_records_and_checkpoint_rotation(tmp_path):
    cfg = load_config(None, FAST + ["train.keep_checkpoints=2"])
    train(cfg, tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_0001", "epoch_0002"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["libraries"]["torch"] and run["seed"] == 0 and run["phases_seconds"]["train"] > 0
    assert load_config(tmp_path / "config.yaml") == cfg
    state = json.loads((tmp_path / "checkpoints" / "epoch_0002" / "state.json").read_text())
    assert state["epoch"] == 2 and state["step"] == 9 and state["scheduler"]


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    cfg = load_config(None, FAST + ["train.epochs=1"])
    train(cfg, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(None, FAST)
    cls = METHODS.get("erm")
    original = cls.training_step

    def nan_later(self, images, labels, ctx):
        out = original(self, images, labels, ctx)
        if ctx.step >= 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(cls, "training_step", nan_later)
    with pytest.raises(TrainingDivergedError, match="epoch_0000"):
        train(cfg, tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch_0000"]


def test_config_typos_name_the_key_and_valid_keys():
    with pytest.raises(ConfigError, match=r"'optim.lrr'.*Did you mean 'lr'.*Valid keys of optim"):
        load_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="method.params.kk"):
        from robustune.methods import create_method
        from robustune.models import create_classifier

        create_method("gfn", create_classifier("small_cnn", 10), {"kk": 3})
    with pytest.raises(ConfigError, match="8/255"):
        load_config(None, ["eval.eps=[eight]"])
    assert load_config(None, ["eval.eps=[8/255]"]).eval.eps == [pytest.approx(8 / 255)]


def test_unknown_method_lists_choices(tmp_path):
    cfg = load_config(None, FAST + ["method.name=gfm"])
    with pytest.raises(KeyError, match="Did you mean 'gfn'"):
        train(cfg, tmp_path)


def test_schedule_warmup_and_cosine():
    from robustune.config import OptimConfig
    from robustune.engine.optim import lr_factor

    cfg = OptimConfig(lr=0.1, warmup_epochs=1, warmup_lr=1e-5)
    assert lr_factor(0, 100, 10, cfg) == pytest.approx(1e-4)
    assert lr_factor(10, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(99, 100, 10, cfg) < 0.01
    lin = OptimConfig(lr=0.1, warmup_epochs=1)
    assert lr_factor(4, 100, 10, lin) == pytest.approx(0.5)
