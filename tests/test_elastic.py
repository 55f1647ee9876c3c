"""torchrun elastic restart: one of two gloo ranks is killed mid-epoch; with --max-restarts the job
restarts both workers, which continue from the last step checkpoint (``--resume auto``), and it
ends with the weights of an uninterrupted 2-process run, bit for bit."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from robustune.engine.checkpoint import list_checkpoints
from robustune.cli.launch import torchrun_command
from robustune.engine.metrics import read_metrics

SETS = ["data.train_subset=256", "data.batch_size=32", "train.epochs=2", "model.name=small_cnn",
        "train.eval_every=0", "train.log_every=1", "train.checkpoint_every=3"]  # 8 steps per epoch


def _env(tmp_path):
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTUNE_CACHE": str(tmp_path / "cache")}


def _rank_pid(parent: int, rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_killed_rank_restarts_and_ends_with_the_uninterrupted_weights(tmp_path):
    config = Path("configs/erm_digits.yaml")
    ref = subprocess.run(torchrun_command(2, config, SETS, tmp_path / "ref"), env=_env(tmp_path),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    run = tmp_path / "run"
    # one restart only: it must connect at once (robustune.distributed prefixes the store per restart;
    # without it a restarted rank could read its killed peer's old address, 2 failures in ~10 runs)
    proc = subprocess.Popen(torchrun_command(2, config, SETS, run, max_restarts=1), env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not (run / "metrics.jsonl").exists() or len(read_metrics(run / "metrics.jsonl")) < 12:
            assert proc.poll() is None and time.time() < deadline, "finished before the kill"
            time.sleep(0.02)
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)  # rank 1, in epoch 2 (step ≈ 11; step checkpoint at 9)
        _, err = proc.communicate(timeout=600)
    finally:  # the agent and its workers: a failed run leaves no worker behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    assert "resumed from epoch_0001_step_" in err  # the restart continued, it did not start over
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in list_checkpoints(run)][-1] == "epoch_0001"
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, 17))  # rank 0 only, no duplicated rows from the replay
