"""Two CPU processes (gloo) under torchrun vs one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest

ARGS = ["--set", "data.batch_size=64", "--set", "train.epochs=3",
        "--set", "model.name=small_cnn", "--set", "optim.lr=3e-3", "--set", "train.log_every=1"]


def _run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTUNE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _val_acc(run_dir):
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [l for l in lines if l.get("epoch_end")][-1]["val_acc"], lines


def test_two_processes_match_one_and_write_one_set_of_files(tmp_path):
    robustune = [sys.executable, "-m", "robustune.cli", "train", "configs/erm_digits.yaml"]
    _run(robustune + ARGS + ["--out", str(tmp_path / "one")], tmp_path)
    _run(robustune + ARGS + ["--out", str(tmp_path / "two"), "--nproc", "2"], tmp_path)
    acc1, _ = _val_acc(tmp_path / "one")
    acc2, lines2 = _val_acc(tmp_path / "two")
    assert acc1 > 0.7 and abs(acc1 - acc2) < 0.1, (acc1, acc2)
    ends = [l for l in lines2 if l.get("epoch_end")]
    assert [l["epoch"] for l in ends] == [0, 1, 2]  # rank 0 only: no duplicated records
    steps = [l["step"] for l in lines2 if not l.get("epoch_end")]
    assert steps == sorted(set(steps))
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["epoch_0001", "epoch_0002"]
    # run.json: world size and per-rank batch; DistributedSampler drops the remainder (docs/scale-out.md)
    from robustune.data import create_dataset

    n = len(create_dataset("digits", "train"))
    one, two = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("one", "two"))
    assert (one["world_size"], one["per_rank_batch"], one["steps_per_epoch"]) == (1, 64, -(-n // 64))
    assert (two["world_size"], two["per_rank_batch"], two["global_batch"]) == (2, 32, 64)
    assert two["steps_per_epoch"] == (n // 2) // 32 and two["steps"] == 3 * two["steps_per_epoch"]


def test_sharded_prediction_gathers_every_image_once(tmp_path):
    script = tmp_path / "shard.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from robustune import distributed as rdist\n"
        "from robustune.eval.clean import predict\n"
        "from robustune.data.digits import TensorImageDataset\n"
        "dist.init_process_group('gloo')\n"
        "x = torch.rand(7, 3, 4, 4); y = list(range(7))\n"
        "class M(torch.nn.Module):\n"
        "    def forward(self, x): return torch.zeros(len(x), 7)\n"
        "ds = TensorImageDataset(x, y, [str(i) for i in range(7)])\n"
        "pred, lab = predict(M(), ds, batch_size=2)\n"
        "assert lab.tolist() == list(range(7)), lab\n"
        "if rdist.rank() == 0: open(r'%s', 'w').write(str(lab.tolist()))\n" % (tmp_path / "out.txt")
    )
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
         tmp_path)
    assert (tmp_path / "out.txt").read_text() == str(list(range(7)))
