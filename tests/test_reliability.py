"""A real kill -9 mid-epoch, then --resume; and the GPU throughput options running on CPU."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from robustune.config import load_config
from robustune.engine import train

ARGS = ["data.train_subset=256", "data.batch_size=16", "train.epochs=3", "train.eval_every=0",
        "model.name=small_cnn", "train.log_every=1"]


def test_kill_9_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    cfg = load_config("configs/erm_digits.yaml", ARGS)
    train(cfg, tmp_path / "full")

    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "robustune.cli", "train", "configs/erm_digits.yaml", "--out", str(cut)]
    for a in ARGS:
        cmd += ["--set", a]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    metrics = cut / "metrics.jsonl"
    # wait until the first checkpoint exists and the second epoch has started (step > 16)
    while time.time() < deadline:
        if (cut / "checkpoints" / "epoch_0000").exists() and metrics.exists() and \
                sum(1 for _ in metrics.open()) > 18:
            break
        if proc.poll() is not None:
            pytest.fail("training finished before it could be killed")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "model.safetensors").exists()

    train(cfg, cut, resume=True)
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("options", [["train.precision=bf16"], ["train.channels_last=true"]])
def test_throughput_options_run_on_cpu(tmp_path, options):
    cfg = load_config(None, ["data.train_subset=64", "data.batch_size=32", "train.epochs=1",
                             "model.name=small_cnn", *options])
    result = train(cfg, tmp_path)
    assert (tmp_path / "model.safetensors").exists() and result.val_accuracy is not None


def test_unknown_precision_is_named(tmp_path):
    cfg = load_config(None, ["data.train_subset=32", "train.epochs=1", "model.name=small_cnn",
                             "train.precision=fp8"])
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        train(cfg, tmp_path)
