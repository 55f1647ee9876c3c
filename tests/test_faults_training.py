"""Faults made for real on a training run: damaged checkpoint files, absurd learning rates,
torn metrics lines, a second process on the run folder, kill -9 before the first checkpoint,
a full disk. Each test asserts nothing is lost, the number is right, or the message is named."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from robustune.config import load_config
from robustune.engine import TrainingDivergedError, train
from robustune.engine.checkpoint import CheckpointCorruptError, list_checkpoints, verify_checkpoint
from robustune.engine.metrics import read_metrics
from robustune.files import FolderLockedError

FAST = ["data.train_subset=96", "data.batch_size=32", "train.epochs=3", "train.eval_every=0",
        "train.log_every=1", "model.name=small_cnn"]  # 3 steps per epoch


def _same_weights(a, b):
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run, and the same run stopped by train.max_steps after 2 epochs."""
    root = tmp_path_factory.mktemp("faults")
    train(load_config(None, FAST), root / "full")
    train(load_config(None, FAST + ["train.max_steps=6"]), root / "stopped")
    return root


def _flip(path, n=64):
    data = bytearray(path.read_bytes())
    start = len(data) // 2  # inside the tensor data, past the header
    for i in range(start, start + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


FAULTS = {
    "flipped_model": lambda c: _flip(c / "model.safetensors"),
    "truncated_optimizer": lambda c: (c / "optimizer.safetensors").write_bytes(
        (c / "optimizer.safetensors").read_bytes()[:1000]),
    "zero_length_model": lambda c: (c / "model.safetensors").write_bytes(b""),
    "truncated_state": lambda c: (c / "state.json").write_text((c / "state.json").read_text()[:300]),
    "pickle_as_safetensors": lambda c: torch.save({"w": torch.ones(3)}, c / "model.safetensors"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_damaged_checkpoint_is_named_and_resume_falls_back(reference, tmp_path, caplog, fault):
    run = tmp_path / "run"
    shutil.copytree(reference / "stopped", run)
    assert [p.name for p in list_checkpoints(run)] == ["epoch_0000", "epoch_0001"]
    newest = run / "checkpoints" / "epoch_0001"
    FAULTS[fault](newest)
    with pytest.raises(CheckpointCorruptError, match=str(newest)):
        verify_checkpoint(newest)
    with caplog.at_level(logging.WARNING):
        train(load_config(None, FAST), run, resume=True)
    assert f"checkpoint {newest} fails verification" in caplog.text
    assert "resuming from" in caplog.text and "epoch_0000" in caplog.text
    assert _same_weights(reference / "full", run)  # the fallback replays exactly
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
    assert steps == [r["step"] for r in read_metrics(reference / "full" / "metrics.jsonl")]


def test_no_checkpoint_verifies_is_an_error_naming_them(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference / "stopped", run)
    for ckpt in list_checkpoints(run):
        _flip(ckpt / "model.safetensors")
    with pytest.raises(CheckpointCorruptError, match="no checkpoint of .* verifies.*epoch_0000"):
        train(load_config(None, FAST), run, resume=True)


def test_max_steps_stops_and_resume_stays_exact(reference):
    stopped = reference / "stopped"
    assert [r["step"] for r in read_metrics(stopped / "metrics.jsonl") if "loss" in r] == list(range(1, 7))
    run = json.loads((stopped / "run.json").read_text())
    assert run["steps"] == 6 and run["steps_per_epoch"] == 3
    assert run["world_size"] == 1 and run["per_rank_batch"] == 32 == run["global_batch"]


def test_logged_lr_is_the_value_the_step_used(reference):
    rows = [r for r in read_metrics(reference / "full" / "metrics.jsonl") if "lr" in r]
    assert rows[0]["lr"] == pytest.approx(1e-3)  # cosine, no warm-up: step 1 runs at the base lr
    assert rows[-1]["lr"] > 0  # the last step's lr, not the schedule's end value 0


def test_torn_last_metrics_line_is_dropped_on_resume(reference, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(reference / "stopped", run)
    metrics = run / "metrics.jsonl"
    with open(metrics, "a") as fh:  # what a full disk / a kill mid-append leaves
        fh.write('{"step": 7, "epoch": 2, "loss": 2.1')
    with caplog.at_level(logging.WARNING):
        train(load_config(None, FAST), run, resume=True)
    assert "dropped a torn last line" in caplog.text

    def rows(path):
        return [(r["step"], r.get("loss"), r.get("lr")) for r in read_metrics(path)]

    assert rows(metrics) == rows(reference / "full" / "metrics.jsonl")
    metrics.write_text(metrics.read_text() + "{broken\n" + '{"step": 99}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line \d+ is not JSON"):
        read_metrics(metrics)


def test_non_finite_weights_are_never_saved(tmp_path):
    # AdamW at lr 1e6: the loss stays finite (1.8e23 at step 3) but the weights overflow
    cfg = load_config(None, FAST + ["optim.lr=1e6"])
    with pytest.raises(TrainingDivergedError, match=r"weights became non-finite at step 3 \(epoch 1"):
        train(cfg, tmp_path)
    assert list_checkpoints(tmp_path) == [] and not (tmp_path / "model.safetensors").exists()
    assert not any(r.get("epoch_end") for r in read_metrics(tmp_path / "metrics.jsonl"))


def _cli(out, *overrides):
    cmd = [sys.executable, "-m", "robustune.cli", "train", "configs/erm_digits.yaml", "--out", str(out)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


SLOW_EPOCH = ["data.batch_size=4", "train.epochs=2", "train.eval_every=0",
              "train.log_every=1"]  # vit_tiny32, ~290 steps in epoch 1: time to act before its checkpoint


def test_second_process_is_refused_and_kill_9_releases_the_lock(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(run, *SLOW_EPOCH), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(read_metrics(run / "metrics.jsonl")) < 5:
            assert proc.poll() is None, "the training ended early"
            time.sleep(0.05)
        cfg = load_config("configs/erm_digits.yaml", SLOW_EPOCH + ["train.max_steps=3"])
        for resume in (False, True):
            with pytest.raises(FolderLockedError, match=f"pid {proc.pid}"):
                train(cfg, run, resume=resume)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert list_checkpoints(run) == [] and len(read_metrics(run / "metrics.jsonl")) >= 5
    train(cfg, run, resume=True)  # the kill released the lock; no checkpoint → a fresh start
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]  # the killed attempt's rows are gone


def _mount_tmpfs(path, size):
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _limit_file_size(limit=600_000):  # fallback without root: a file-size limit (EFBIG)
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _train_cli(run, capsys):
    """``robustune train`` in this process (on the tmpfs): (exit code, stderr)."""
    from robustune.cli import main

    args = ["train", "configs/erm_digits.yaml", "--out", str(run)]
    for item in FAST:
        args += ["--set", item]
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


def test_full_disk_is_one_message_and_keeps_the_previous_checkpoint(tmp_path, capsys):
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "2m")  # epoch_0000 (1.2 MB) fits, epoch_0001 does not
    run = disk / "run"
    try:
        if mounted:
            code, stderr = _train_cli(run, capsys)
        else:  # no root: a real file-size limit in a child process
            proc = subprocess.run(_cli(run, *FAST), capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_limit_file_size)
            code, stderr = proc.returncode, proc.stderr
        err = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and "Traceback" not in stderr
        assert len(err) == 1 and str(run / "checkpoints") in err[0]
        assert ("no space left" if mounted else "file-size limit") in err[0]
        assert " free, about " in err[0] and "needed" in err[0]
        leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
        assert leftovers == []
        if mounted:
            assert [p.name for p in list_checkpoints(run)] == ["epoch_0000"]
            assert verify_checkpoint(run / "checkpoints" / "epoch_0000")["step"] == 3
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_while_corrupting_images_is_one_message(tmp_path, capsys):
    from robustune.cli import main

    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "64k")  # 360 PNGs of 32 px do not fit
    args = ["corrupt", "digits", "--out", str(disk / "c"), "--corruptions", "pixelate",
            "--severities", "2", "--workers", "1"]
    try:
        if mounted:
            with pytest.raises(SystemExit) as exc:
                main(args)
            code, stderr = exc.value.code, capsys.readouterr().err
        else:
            proc = subprocess.run([sys.executable, "-m", "robustune.cli", *args], capture_output=True,
                                  text=True, timeout=300, preexec_fn=lambda: _limit_file_size(500))
            code, stderr = proc.returncode, proc.stderr
        err = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and "Traceback" not in stderr and len(err) == 1
        assert f"while writing '{disk / 'c' / 'pixelate' / '2'}" in err[0] and " free" in err[0]
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)
