"""Evaluation over two CPU processes (gloo): the numbers a single process gives, shards that merge,
processes sharing one folder, AutoAttack resumed after kill -9 (issue 21; tiny models, digits)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FAST_AA = {"apgd-ce": {"steps": 4}, "apgd-t": {"steps": 3, "n_target_classes": 2},
           "fab-t": {"steps": 3, "n_target_classes": 2}, "square": {"n_queries": 20}}

# Every sharded evaluation loop, run on 2 ranks; rank 0 saves what it got. The same code runs in
# the test process (1 rank) for the reference.
LOOPS = r'''
import sys, torch
from robustune import distributed as rdist
from robustune.attacks import create_attack
from robustune.attacks.autoattack import AutoAttack
from robustune.data import create_dataset
from robustune.data.digits import TensorImageDataset
from robustune.eval.autoattack_run import autoattack_outcomes
from robustune.eval.clean import predict
from robustune.eval.detection import coco_detections, coco_map, predict_detections
from robustune.eval.ood_suites import perturbation_cell, predict_logits
from robustune.eval.robust import attack_outcomes
from robustune.models import create_classifier

FAST = %(fast)r


class Sequences(torch.utils.data.Dataset):  # ImageNet-P style: one (frames, label) per item
    def __init__(self, x):
        self.x = x
    def __len__(self):
        return 5
    def __getitem__(self, i):
        return self.x[i * 4:(i + 1) * 4], 0


class FakeDetector(torch.nn.Module):  # boxes and scores that depend on every pixel
    task = "detection"
    def forward(self, images):
        out = []
        for x in images:
            m = x.mean(0)
            s = float(m.mean())
            out.append({"boxes": torch.tensor([[2.0, 2.0, 20 + 20 * s, 22 + 10 * s]]),
                        "scores": torch.tensor([min(1.0, 2 * s)]), "labels": torch.tensor([int(m.sum()) %% 10])})
        return out


def loops(weights):
    from safetensors.torch import load_file

    model = create_classifier("small_cnn", num_classes=10)
    model.load_state_dict(load_file(weights))
    model.eval()
    ds = create_dataset("digits", "test")
    pts = TensorImageDataset(ds.images[:21], ds.targets[:21], ds.classes)
    out = {}
    out["predict"] = predict(model, pts, batch_size=4)
    out["logits"] = predict_logits(model, pts, 4, "cpu")
    out["p"] = vars(perturbation_cell(model, Sequences(ds.images[:20]), "gaussian_noise", "cpu", 3))
    pgd = create_attack("pgd", model, eps=8 / 255, steps=3, alpha=2 / 255)
    out["pgd"] = attack_outcomes(model, pts, pgd, batch_size=4, seed=3)
    aa = autoattack_outcomes(model, pts, AutoAttack(model, eps=4 / 255, overrides=FAST), batch_size=4, seed=1)
    out["aa"] = (aa.clean, aa.robust, aa.fooled_by)
    det = create_dataset("digits_det", "test", n_images=9, canvas=48)
    preds = predict_detections(FakeDetector(), det, batch_size=2)
    out["det"] = [{k: v for k, v in p.items()} for p in preds]
    out["map"] = coco_map(det.coco_ground_truth(), coco_detections(preds))
    return out


if __name__ == "__main__":
    import torch.distributed as dist
    dist.init_process_group("gloo")
    res = loops(sys.argv[1])
    if rdist.rank() == 0:
        torch.save(res, sys.argv[2])
    dist.destroy_process_group()  # gloo may abort at exit otherwise
'''


def _torchrun(script, *args, nproc=2, timeout=600):
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={nproc}", str(script), *map(str, args)],
                         capture_output=True, text=True, env=ENV, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_sharded_loop_on_two_ranks_gives_one_process_numbers(trained_tiny_model, tmp_path):
    """clean, ImageNet-A/R logits, ImageNet-P sequences, PGD, AutoAttack (every component),
    detection predictions and mAP: the 2-rank results equal the 1-process ones exactly."""
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained_tiny_model.state_dict().items()}, str(weights))
    script = tmp_path / "loops.py"
    script.write_text(LOOPS % {"fast": FAST_AA})
    _torchrun(script, weights, tmp_path / "two.pt")
    two = torch.load(tmp_path / "two.pt", weights_only=False)  # our own file, written just now
    sys.path.insert(0, str(tmp_path))
    try:
        import loops

        one = loops.loops(str(weights))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("loops", None)
    assert one.keys() == two.keys()
    for key in one:
        assert _same(one[key], two[key]), key
    assert one["aa"][2].ne(-1).any()  # some component fooled some point: the components ran


# ---------------------------------------------------------------------------- the CLI, end to end


@pytest.fixture(scope="module")
def eval_run(trained_tiny_run, tmp_path_factory):
    """The tiny run with an evaluation batch of 8 (several batches per cell) and a digits-C copy."""
    import shutil

    import yaml
    from torch.utils.data import Subset

    from robustune.corruptions import corrupt_dataset
    from robustune.data import create_dataset

    base = tmp_path_factory.mktemp("dist_eval")
    run = base / "run"
    shutil.copytree(trained_tiny_run, run, ignore=shutil.ignore_patterns("eval*", "checkpoints"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["eval_batch_size"] = 8
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    corrupt_dataset(Subset(create_dataset("digits", "test"), range(24)), base / "digits-c",
                    "gaussian_noise,contrast", "1,3")
    return run, base / "digits-c"


def _eval(run, out, *args):
    cmd = [sys.executable, "-m", "robustune.cli", "eval", str(run), "--out", str(out), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _cells(out, summaries=False):
    data = json.loads((Path(out) / "results.json").read_text())
    return {(c["key"], c["fingerprint"]): (c["value"], c["n"]) for c in data["store"]
            if summaries or not c["fingerprint"].startswith("summary:")}


def _per_sample(out):
    return {p.name: load_file(str(p)) for p in (Path(out) / "per_sample").glob("*.safetensors")}


def test_eval_nproc_2_and_shards_merged_equal_one_process(eval_run, tmp_path):
    run, croot = eval_run
    aa = json.dumps(FAST_AA)  # component name -> settings (recorded in the cells as non-standard)
    args = ["--suite", "clean,pgd,adversarial,corruptions", "--attacks", "pgd3,autoattack", "--eps", "2/255",
            "--steps", "2", "--n-examples", "20", "--option", f"corruption_root={croot}",
            "--option", f"attack_overrides={aa}"]
    _eval(run, tmp_path / "one", *args)
    _eval(run, tmp_path / "two", *args, "--nproc", "2")
    one = _cells(tmp_path / "one", summaries=True)
    assert len(one) == 11 and _cells(tmp_path / "two", summaries=True) == one
    per_one, per_two = _per_sample(tmp_path / "one"), _per_sample(tmp_path / "two")
    assert per_one.keys() == per_two.keys() and len(per_one) == 9
    assert all(_same(per_one[k], per_two[k]) for k in per_one)
    # two shards into two folders, merged: the cells of one full evaluation
    _eval(run, tmp_path / "s0", *args, "--shard", "0/2")
    _eval(run, tmp_path / "s1", *args, "--shard", "1/2")
    s0, s1 = _cells(tmp_path / "s0"), _cells(tmp_path / "s1")
    assert s0 and s1 and not (s0.keys() & s1.keys())
    res = subprocess.run([sys.executable, "-m", "robustune.cli", "merge", str(tmp_path / "m"),
                          str(tmp_path / "s0"), str(tmp_path / "s1")], capture_output=True, text=True, env=ENV)
    assert res.returncode == 0, res.stderr
    assert _cells(tmp_path / "m") == _cells(tmp_path / "one")
    # the merged folder, evaluated again with an mCE reference given only now: no cell computed
    done = _eval(run, tmp_path / "m", *args, "--option", f"reference_results={tmp_path / 'one'}")
    assert "computed by another" not in done.stderr and " = " not in done.stderr.split("mean corruption")[0]
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    assert merged["cells"]["corruptions/mCE"]["value"] == pytest.approx(100.0)  # itself as reference
    assert _cells(tmp_path / "m") == _cells(tmp_path / "one")
    # corruption cells evaluate the corrupted copy, not the split's subset: another --n-examples reuses them
    again = _eval(run, tmp_path / "m", "--suite", "corruptions", "--n-examples", "10",
                  "--option", f"corruption_root={croot}")
    assert again.stderr.count(": already stored") == 4 and "top1_accuracy =" not in again.stderr


SLOW_SUITE = r'''
import os, sys, time, torch
from robustune.config import EvalConfig
from robustune.eval import Cell, evaluate, register_suite

@register_suite("slow")
def slow(ctx):
    for k in range(16):
        def compute(k=k):
            with open(sys.argv[2], "a") as fh:
                fh.write(f"{k} {os.getpid()}\n")
            time.sleep(0.4)
            return Cell(f"slow/{k}", "slow", "none", float(k), n=1)
        yield f"slow/{k}", compute

slow.uses_seed = False
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4]):  # start together
    time.sleep(0.05)
torch.manual_seed(0)  # the same model in both processes
evaluate(torch.nn.Linear(2, 2), [], EvalConfig(suites=["slow"], eps=[]), sys.argv[1])
'''


def test_two_processes_on_one_folder_compute_no_cell_twice(tmp_path):
    script, log, go = tmp_path / "slow.py", tmp_path / "computed.txt", tmp_path / "go"
    script.write_text(SLOW_SUITE)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), str(log),
                               str(tmp_path / f"ready{i}"), str(go)], env=ENV, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    rows = [line.split() for line in log.read_text().splitlines()]
    keys = [k for k, _ in rows]
    assert sorted(keys, key=int) == [str(k) for k in range(16)]  # each cell exactly once
    assert len({pid for _, pid in rows}) == 2  # both processes computed cells
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted(c["value"] for c in stored["store"]) == [float(k) for k in range(16)]
    assert not (tmp_path / "out" / "claims").exists() or not any((tmp_path / "out" / "claims").iterdir())


KILLED_AA = r'''
import sys, torch
from robustune import distributed as rdist
from robustune.attacks.autoattack import AutoAttack
from robustune.data import create_dataset
from robustune.data.digits import TensorImageDataset
from robustune.eval.autoattack_run import autoattack_outcomes
from robustune.models import create_classifier

from safetensors.torch import load_file
rdist.init_from_env(torch.device("cpu"))  # under torchrun: 2 ranks
model = create_classifier("small_cnn", num_classes=10)
model.load_state_dict(load_file(sys.argv[3]))
model.eval()
ds = create_dataset("digits", "test")
pts = TensorImageDataset(ds.images[:40], ds.targets[:40], ds.classes)
out = autoattack_outcomes(model, pts, AutoAttack(model, eps=4 / 255, overrides=%(fast)r), batch_size=4,
                          seed=1, state_path=sys.argv[1])
if rdist.is_main_process():
    torch.save((out.clean, out.robust, out.fooled_by), sys.argv[2])
rdist.shutdown()
'''


def test_kill_9_inside_an_autoattack_component_then_resume_gives_the_uninterrupted_result(
        trained_tiny_model, tmp_path):
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in trained_tiny_model.state_dict().items()}, str(weights))
    script, state = tmp_path / "aa.py", tmp_path / "state.json"
    script.write_text(KILLED_AA % {"fast": FAST_AA})
    subprocess.run([sys.executable, str(script), str(tmp_path / "full.json"), str(tmp_path / "full.pt"), str(weights)],
                   env=ENV, check=True, timeout=600, capture_output=True)
    proc = subprocess.Popen([sys.executable, str(script), str(state), str(tmp_path / "x.pt"), str(weights)],
                            env=ENV, stderr=subprocess.DEVNULL)
    seen = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            seen = json.loads(state.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            seen = None
        if seen and seen.get("current") and len(seen["current"]["done"]) >= 2:
            os.kill(proc.pid, signal.SIGKILL)  # inside a component, a few batches done
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    at_kill = json.loads(state.read_text())
    assert at_kill["current"]["done"]  # progress inside the component was saved
    # resumed on 2 ranks (any world size resumes): the uninterrupted per-point result
    _torchrun(script, state, tmp_path / "resumed.pt", weights)
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert all(torch.equal(a, b) for a, b in zip(full, resumed))
    final = json.loads(state.read_text())
    assert final["done"] == [c["name"] for c in json.loads((tmp_path / "full.json").read_text())["components"]]


# ---------------------------------------------------------------------------- DDP training


ERAPT_DDP = r'''
import os, sys, torch, torch.distributed as dist
from safetensors.torch import save_file
from robustune.config import load_config
from robustune.engine import train
from robustune.methods.erapt import ERAPT

crash = int(os.environ.get("CRASH_AT", "-1"))
if crash >= 0:  # every rank stops at the same step, before its collectives
    original = ERAPT.training_step
    def stopping(self, images, labels, ctx):
        if ctx.step == crash:
            raise SystemExit(3)
        return original(self, images, labels, ctx)
    ERAPT.training_step = stopping
cfg = load_config("configs/clip_tiny_digits_erapt.yaml", sys.argv[3:])
res = train(cfg, sys.argv[1], resume=sys.argv[2] == "resume")
m = res.method.memory
save_file({"delta": m.delta.contiguous(), "valid": m.valid.contiguous()},
          f"{sys.argv[1]}/memory_rank{dist.get_rank()}.safetensors")
dist.destroy_process_group()
'''
ERAPT_SETS = ["model.weights=null", "data.options.shots=2", "data.batch_size=4", "train.eval_every=0",
              "train.log_every=1", "train.epochs=2", "method.params.population=3", "method.params.generations=1",
              "method.params.mutation=gradient", "method.params.init=mutation", "method.params.p_mut=1.0",
              "method.params.warm_start=true", "method.params.diagnostics_every=0", "method.params.dwa_window=1"]


def test_erapt_memory_is_per_rank_survives_steps_and_resumes_with_the_same_world_size(tmp_path):
    script = tmp_path / "erapt_ddp.py"
    script.write_text(ERAPT_DDP)
    _torchrun(script, tmp_path / "a", "fresh", *ERAPT_SETS)
    mem = [load_file(str(tmp_path / "a" / f"memory_rank{r}.safetensors")) for r in (0, 1)]
    # each rank searched its own shard's images: rank 1's memory is its own, not rank 0's broadcast
    assert mem[1]["valid"].any() and mem[1]["delta"].abs().sum() > 0
    assert not torch.equal(mem[0]["valid"], mem[1]["valid"])
    assert sorted(p.name for p in (tmp_path / "a" / "rank_state" / "epoch_0001").iterdir()) == \
        ["rank0_of_2.safetensors", "rank1_of_2.safetensors"]
    # killed in epoch 2, then resumed: every rank's memory as in the uninterrupted run
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(script), str(tmp_path / "b"), "fresh", *ERAPT_SETS],
                         env={**ENV, "CRASH_AT": "3"}, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and (tmp_path / "b" / "checkpoints" / "epoch_0000").is_dir()
    # one process cannot resume a 2-process run's per-rank memory: one line naming the fix
    one = subprocess.run([sys.executable, "-m", "robustune.cli", "train", "configs/clip_tiny_digits_erapt.yaml",
                          "--out", str(tmp_path / "b"), "--resume", *[a for s in ERAPT_SETS for a in ("--set", s)]],
                         env=ENV, capture_output=True, text=True, timeout=600)
    errors = [line for line in one.stderr.splitlines() if line.startswith("error:")]
    assert one.returncode == 2 and len(errors) == 1 and "--nproc 2" in errors[0], one.stderr[-2000:]
    _torchrun(script, tmp_path / "b", "resume", *ERAPT_SETS)
    for r in (0, 1):
        resumed = load_file(str(tmp_path / "b" / f"memory_rank{r}.safetensors"))
        assert all(torch.equal(resumed[k], mem[r][k]) for k in ("delta", "valid")), r

    def losses(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "w_adv" in r]

    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 4


def test_bad_input_under_eval_nproc_is_one_line(trained_tiny_run, tmp_path):
    res = subprocess.run([sys.executable, "-m", "robustune.cli", "eval", str(trained_tiny_run), "--out",
                          str(tmp_path / "e"), "--suite", "corruptions", "--nproc", "2"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "corruption_root" in errors[0] and "FAILED" not in res.stderr


def test_a_global_batch_the_ranks_cannot_share_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "robustune.cli", "train", "configs/erm_digits.yaml", "--nproc", "2",
                          "--set", "data.batch_size=3", "--out", str(tmp_path / "run")],
                         env=ENV, capture_output=True, text=True, timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 2 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "data.batch_size=3 cannot be shared by 2 processes" in errors[0] and "data.batch_size=2" in errors[0]
    assert not (tmp_path / "run").exists()
    from robustune import distributed as dist

    assert dist.per_rank_batch(8, world=8) == 1
    with pytest.raises(ValueError, match=r"set data.batch_size to a multiple of 8, e.g. --set data.batch_size=8"):
        dist.per_rank_batch(4, world=8)  # the CLIP presets' batch 4 on 8 GPUs
