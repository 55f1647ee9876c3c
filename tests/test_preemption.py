"""Preemption: step checkpoints resume exactly inside an epoch (method state included), SIGTERM
mid-epoch then --resume auto gives the uninterrupted weights bit for bit, a second signal exits at
once, evaluation stops after its current cell, and --resume auto refuses a different run."""

import json
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
from robustune.engine.checkpoint import list_checkpoints
from robustune.engine.metrics import read_metrics
from robustune.methods import METHODS
from robustune.preemption import EXIT_PREEMPTED, Preempted, parse_duration

FAST = ["data.train_subset=96", "data.batch_size=32", "train.epochs=3", "train.eval_every=0",
        "train.log_every=1", "model.name=small_cnn"]  # 3 steps per epoch


def _same_weights(a, b):
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _steps(run):
    return [(r["step"], r.get("loss"), r.get("train_loss")) for r in read_metrics(run / "metrics.jsonl")]


ERAPT_SETS = ["model.weights=null", "data.options.shots=2", "train.eval_every=0", "train.log_every=1",
              "train.epochs=2", "method.params.population=3", "method.params.generations=1",
              "method.params.fitness=neighbor", "method.params.warm_start=true", "method.params.dwa_window=1",
              "method.params.diagnostics_every=0"]
STEP_CASES = {  # (config, overrides, method, crash step, the step checkpoint resumed from)
    # refresh_every=1: on_epoch_start recomputes the similarity — a resume inside the epoch must not
    "gfn": (None, FAST + ["method.name=gfn", "method.params={k: 3, eta: 0.05, refresh_every: 1}"],
            "gfn", 5, "epoch_0001_step_00000005"),
    # warm-start memory, DWA weights, the neighbour-fitness table of the epoch start (restored, not
    # recomputed; one step barely moves it, so this case guards the memory and DWA state)
    "erapt": ("configs/clip_tiny_digits_erapt.yaml", ERAPT_SETS, "erapt", 3, "epoch_0001_step_00000003"),
}


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_step_checkpoint_resume_inside_an_epoch_is_exact(tmp_path, crash_at_step, case):
    path, sets, method, crash, ckpt = STEP_CASES[case]
    cfg = load_config(path, sets + ["train.checkpoint_every=1"])
    train(cfg, tmp_path / "full")
    crash_at_step(cfg, tmp_path / "cut", METHODS.get(method), crash)
    assert list_checkpoints(tmp_path / "cut")[-1].name == ckpt  # inside epoch 2, not at its start
    train(cfg, tmp_path / "cut", resume="auto")
    assert _same_weights(tmp_path / "full", tmp_path / "cut")
    assert _steps(tmp_path / "full") == _steps(tmp_path / "cut")  # epoch totals restored too


def _cli(run, sets):
    cmd = [sys.executable, "-m", "robustune.cli", "train", "configs/erm_digits.yaml", "--out", str(run)]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def test_sigterm_mid_epoch_then_resume_auto_is_bit_identical(tmp_path):
    sets = ["data.train_subset=192", "data.batch_size=16", "train.epochs=3", "train.eval_every=0",
            "train.log_every=1", "model.name=small_cnn"]  # 12 steps per epoch, no step checkpoints asked
    cfg = load_config("configs/erm_digits.yaml", sets)
    train(cfg, tmp_path / "full")
    run = tmp_path / "cut"
    proc = subprocess.Popen(_cli(run, sets), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while len(read_metrics(run / "metrics.jsonl")) < 16 if (run / "metrics.jsonl").exists() else True:
        assert proc.poll() is None and time.time() < deadline, "the training ended before the signal"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # in epoch 2 (step 15 or so)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if "to continue" in line]
    assert len(lines) == 1 and "stopped by SIGTERM at step" in lines[0] and "--resume auto" in lines[0]
    last = list_checkpoints(run)[-1]
    state = json.loads((last / "state.json").read_text())
    assert "_step_" in last.name and 0 < state["epoch_step"] < 12 and state["epoch"] >= 1
    assert not (run / "model.safetensors").exists()
    train(cfg, run, resume="auto")
    assert _same_weights(tmp_path / "full", run)
    assert _steps(tmp_path / "full") == _steps(run)


def test_second_signal_exits_at_once(tmp_path):
    code = ("import time, sys\nfrom robustune.preemption import StopSignals\n"
            "with StopSignals(['SIGTERM', 'SIGUSR1']) as stop:\n"
            "    print('ready', flush=True)\n"
            "    while not stop.requested: time.sleep(0.01)\n"
            "    print('first', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGUSR1)
    assert proc.stdout.readline().strip() == "first"  # the first signal only asks
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM and time.time() - t0 < 10
    assert "second SIGTERM: exiting at once" in proc.stderr.read()


def test_evaluation_stops_after_its_current_cell_and_continues(tmp_path, monkeypatch):
    from robustune.config import EvalConfig
    from robustune.eval import evaluate, suites
    from robustune.models import create_classifier
    from robustune.data import load_splits

    cfg_data = load_config(None, ["model.name=small_cnn"]).data
    torch.manual_seed(0)
    model = create_classifier("small_cnn", num_classes=10).eval()
    test = load_splits(cfg_data, model).test
    ecfg = EvalConfig(suites=["clean", "pgd"], eps=[1 / 255, 2 / 255], pgd_steps=2, n_examples=40)
    full = evaluate(model, test, ecfg, tmp_path / "full", batch_size=40)
    original = suites.pgd_suite

    def signalling(ctx):  # SIGTERM arrives while the first PGD cell is computed
        for i, (key, compute) in enumerate(original(ctx)):
            def wrapped(compute=compute, i=i):
                if i == 0:
                    os.kill(os.getpid(), signal.SIGTERM)
                return compute()
            yield key, wrapped

    monkeypatch.setitem(suites.SUITES._items, "pgd", signalling)
    with pytest.raises(Preempted, match="stopped by SIGTERM after cell pgd"):
        evaluate(model, test, ecfg, tmp_path / "cut", batch_size=40)
    saved = json.loads((tmp_path / "cut" / "results.json").read_text())["cells"]
    assert len(saved) == 2  # clean and the PGD cell it was in, nothing after
    monkeypatch.setitem(suites.SUITES._items, "pgd", original)
    again = evaluate(model, test, ecfg, tmp_path / "cut", batch_size=40)
    assert {k: c.value for k, c in again.cells.items()} == {k: c.value for k, c in full.cells.items()}


def test_resume_auto_starts_continues_or_refuses(tmp_path):
    cfg = load_config(None, FAST + ["train.epochs=1"])
    train(cfg, tmp_path, resume="auto")  # an empty folder: a fresh start
    before = (tmp_path / "model.safetensors").read_bytes()
    assert train(cfg, tmp_path, resume="auto").already_finished  # the same run, finished
    other = load_config(None, FAST + ["train.epochs=1", "train.seed=1"])
    with pytest.raises(FileExistsError, match=r"holds a different run \(train.seed: 0 → 1\)"):
        train(other, tmp_path, resume="auto")
    assert (tmp_path / "model.safetensors").read_bytes() == before
    # operational settings do not make another run
    same = load_config(None, FAST + ["train.epochs=1", "train.checkpoint_every=15m", "train.keep_checkpoints=5"])
    assert train(same, tmp_path, resume="auto").already_finished


def test_checkpoint_every_values():
    assert parse_duration("15m") == 900 and parse_duration("90s") == 90 and parse_duration("2h") == 7200
    with pytest.raises(ValueError, match="neither a step count .* nor a duration"):
        parse_duration("soon")
    cfg = load_config(None, ["train.checkpoint_every=500"])
    assert cfg.train.checkpoint_every == 500
    assert load_config(None, ["train.checkpoint_every=15m"]).train.checkpoint_every == "15m"


def test_step_checkpoints_are_ordered_and_the_last_k_kept(tmp_path):
    cfg = load_config(None, FAST + ["train.epochs=2", "train.checkpoint_every=2", "train.keep_checkpoints=3"])
    train(cfg, tmp_path)
    names = [p.name for p in list_checkpoints(tmp_path)]
    # steps 2 (epoch 1), 3 (end of epoch 1), 4 (epoch 2), 6 (end of epoch 2): the last 3 kept
    assert names == ["epoch_0000", "epoch_0001_step_00000004", "epoch_0001"]


def test_signal_on_the_last_step_of_an_epoch_resumes_into_its_end(tmp_path, monkeypatch):
    """SIGTERM during an epoch's last step: the step checkpoint holds the whole epoch's steps; the
    resume runs no step of it, only its end (totals, epoch checkpoint), then the next epochs."""
    cfg = load_config(None, FAST + ["train.epochs=2"])
    train(cfg, tmp_path / "full")
    cls = METHODS.get("erm")
    original = cls.training_step

    def signalling(self, images, labels, ctx):
        if ctx.step == 2:  # the 3rd and last step of epoch 1
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, images, labels, ctx)

    monkeypatch.setattr(cls, "training_step", signalling)
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 3 .epoch 1."):
        train(cfg, tmp_path / "cut")
    monkeypatch.setattr(cls, "training_step", original)
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["epoch_0000_step_00000003"]
    train(cfg, tmp_path / "cut", resume="auto")
    assert _same_weights(tmp_path / "full", tmp_path / "cut")
    assert _steps(tmp_path / "full") == _steps(tmp_path / "cut")


def test_a_resume_removes_what_a_killed_writer_left(tmp_path):
    cfg = load_config(None, FAST + ["train.epochs=1"])
    train(cfg, tmp_path, resume="auto")
    (tmp_path / "checkpoints" / ".epoch_0001_step_00000004.ab12").mkdir()  # kill -9 inside save_checkpoint
    (tmp_path / ".metrics.jsonl.x1y2.tmp").write_text("{")  # ... inside an atomic write
    (tmp_path / "model.safetensors").unlink()
    train(cfg, tmp_path, resume="auto")  # re-exports the weights from the last checkpoint
    assert sorted(p.name for p in tmp_path.rglob(".*") if ".tmp" in p.name or p.name.startswith(".epoch")) == []


def test_resume_option_forms(tmp_path, capsys):
    from robustune.cli import main
    from robustune.cli.app import normalise_resume

    assert normalise_resume(["train", "c.yaml", "--resume"]) == ["train", "c.yaml", "--resume=yes"]
    assert normalise_resume(["train", "--resume", "c.yaml"]) == ["train", "--resume=yes", "c.yaml"]
    assert normalise_resume(["train", "c.yaml", "--resume", "auto"]) == ["train", "c.yaml", "--resume", "auto"]
    with pytest.raises(SystemExit) as exc:
        main(["train", "configs/erm_digits.yaml", "--out", str(tmp_path), "--resume=maybe"])
    assert exc.value.code == 2 and "--resume 'maybe': use auto, yes (or --resume alone) or no" in capsys.readouterr().err


def test_every_command_exits_75_with_one_line_on_a_handled_signal(capsys):
    """The one command decorator: demo, ablate, fewshot (which train inside) as train and eval."""
    import typer

    from robustune.cli.app import reports_user_errors

    def stopped():
        raise Preempted("stopped by SIGTERM at step 3 (epoch 1); step checkpoint x in y")

    with pytest.raises(typer.Exit) as exc:
        reports_user_errors(stopped)()
    assert exc.value.exit_code == EXIT_PREEMPTED
    assert "stopped by SIGTERM at step 3 (epoch 1); step checkpoint x in y; to continue, run the same command" \
        in capsys.readouterr().err
