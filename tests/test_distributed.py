"""Two CPU processes (gloo) under torchrun vs one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

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
        "if rdist.rank() == 0: open(r'%s', 'w').write(str(lab.tolist()))\n"
        "dist.destroy_process_group()\n" % (tmp_path / "out.txt")
    )
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
         tmp_path)
    assert (tmp_path / "out.txt").read_text() == str(list(range(7)))


def test_two_process_gfn_det_ranks_end_with_identical_weights(tmp_path):
    """gfn_det (the detection step with the most parts: per-rank similarity, input-gradient step,
    opened-up Faster R-CNN forward) under DDP: each rank trains on its own shard, so equal weights
    at the end mean the gradients were averaged; rank 0's export is those weights."""
    script = tmp_path / "det_ddp.py"
    script.write_text(
        "import sys, torch, torch.distributed as dist\n"
        "from safetensors.torch import save_file\n"
        "from robustune.config import load_config\n"
        "from robustune.engine import train\n"
        "cfg = load_config('configs/det_gfn_digits.yaml', sys.argv[2:])\n"
        "res = train(cfg, sys.argv[1])\n"
        "state = {k: v.detach().contiguous() for k, v in res.method.export_state().items()}\n"
        "save_file(state, f'{sys.argv[1]}/rank{dist.get_rank()}.safetensors')\n"
    )
    run = tmp_path / "run"
    sets = ["model.init_from=null", "data.options.n_images=8", "data.options.canvas=48", "data.batch_size=4",
            "data.eval_batch_size=4", "train.epochs=1", "train.eval_every=0", "train.log_every=1",
            "method.params.similarity_source=head_weights"]
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
          str(run), *sets], tmp_path)
    from safetensors.torch import load_file

    r0, r1, saved = (load_file(str(run / f)) for f in ("rank0.safetensors", "rank1.safetensors", "model.safetensors"))
    assert r0.keys() == r1.keys() == saved.keys() and len(r0) > 50
    assert all(torch.equal(r0[k], r1[k]) and torch.equal(r0[k], saved[k]) for k in r0)
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in logs if not l.get("epoch_end")] == [1, 2]  # 8 images / global batch 4, rank 0 only
    run_json = json.loads((run / "run.json").read_text())
    assert (run_json["world_size"], run_json["per_rank_batch"]) == (2, 2)
