"""Faults made for real on evaluation and loading: cells measured on other inputs, damaged or
mismatched weights files, a second process on the results folder, the device, bad config files
and keys. Each asserts the right number or a one-line message naming the file/key and the fix."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from robustune.cli import main
from robustune.config import ConfigError, load_config
from robustune.engine import train
from robustune.errors import FolderLockedError


def _eval(run, out, *args):
    """``robustune eval`` in this process: (exit code, stderr lines starting with 'error:')."""
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--out", str(out), *args])
    return exc.value.code


def _error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture()
def run_copy(trained_tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_tiny_run, run, ignore=shutil.ignore_patterns("eval*", "checkpoints"))
    return run


def test_cells_of_other_subsets_coexist_and_selectors_are_not_inputs(run_copy, tmp_path, capsys):
    from robustune.data import create_dataset

    out = tmp_path / "eval"
    assert _eval(run_copy, out, "--suite", "clean", "--n-examples", "50") in (0, None)
    first = json.loads((out / "results.json").read_text())
    assert first["cells"]["clean"]["n"] == 50
    # the full split into the same folder: computed and kept beside the 50-image cell; the view
    # (what reports read) holds the cell with the most images: the whole test split
    assert _eval(run_copy, out, "--suite", "clean") in (0, None)
    full = json.loads((out / "results.json").read_text())
    n_test = len(create_dataset("digits", "test"))
    assert full["cells"]["clean"]["n"] == n_test
    assert sorted(c["n"] for c in full["store"] if c["key"] == "clean") == [50, n_test]
    assert len(list((out / "per_sample").glob("clean@*.safetensors"))) == 2
    # the 50-image evaluation again: nothing computed, the view unchanged
    capsys.readouterr()
    assert _eval(run_copy, out, "--suite", "clean", "--n-examples", "50") in (0, None)
    assert "clean: already stored" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["store"] == full["store"]
    # a selector option (attacks) is not an input of the pgd cell: reused, not refused
    assert _eval(run_copy, out, "--suite", "pgd", "--n-examples", "50", "--steps", "2") in (0, None)
    capsys.readouterr()
    assert _eval(run_copy, out, "--suite", "pgd", "--n-examples", "50", "--steps", "2",
                 "--option", "attacks=[pgd]") in (0, None)
    assert "pgd/Linf/eps=8/255/steps=2: already stored" in capsys.readouterr().err
    # other weights (one flipped weight) with the same file name: refused
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1
    save_file(state, str(run_copy / "model.safetensors"))
    record = json.loads((run_copy / "run.json").read_text())
    record.pop("weights_sha256")  # a re-export, not a corruption
    (run_copy / "run.json").write_text(json.dumps(record))
    before = (out / "results.json").read_text()
    assert _eval(run_copy, out, "--suite", "clean", "--n-examples", "50") == 2
    msg = _error(capsys)
    assert "cell(s) measured on other inputs" in msg and "weights_sha256" in msg
    assert (out / "results.json").read_text() == before


def test_eval_runs_on_the_runs_device_and_records_it(run_copy, tmp_path):
    from robustune.eval import suites
    from robustune.eval.results import Cell

    seen = {}

    def probe(ctx):
        def compute():
            seen.update(ctx=str(ctx.device), model=str(next(ctx.model.parameters()).device))
            return Cell("probe", "probe_device", "none", 0.0)

        yield "probe", compute

    suites.SUITES.add("probe_device", probe)
    try:
        cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
        assert cfg["train"]["device"] == "auto"
        assert _eval(run_copy, tmp_path / "a", "--suite", "probe_device,pgd", "--n-examples", "8",
                     "--steps", "1") in (0, None)
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert seen == {"ctx": expected, "model": expected + (":0" if expected == "cuda" else "")}
        results = json.loads((tmp_path / "a" / "results.json").read_text())
        assert results["environment"]["device"] == expected
        assert _eval(run_copy, tmp_path / "b", "--suite", "probe_device", "--device", "cpu") in (0, None)
        assert seen["ctx"] == "cpu" and seen["model"] == "cpu"
    finally:
        suites.SUITES._items.pop("probe_device")


def _flip(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "flipped": _flip,
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:5000]),
    "zero_length": lambda p: p.write_bytes(b""),
    "bad_header": lambda p: p.write_bytes(b"\xff" * 8 + p.read_bytes()[8:]),
    "pickle": lambda p: torch.save({"w": torch.ones(2)}, p),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_final_weights_are_one_line_on_eval(run_copy, tmp_path, capsys, damage):
    weights = run_copy / "model.safetensors"
    DAMAGE[damage](weights)
    assert _eval(run_copy, tmp_path / "e", "--suite", "clean") == 2
    assert f"{weights} does not match the sha256 recorded in run.json" in _error(capsys)
    # without a recorded digest (an older run), the file itself is named
    record = json.loads((run_copy / "run.json").read_text())
    record.pop("weights_sha256")
    (run_copy / "run.json").write_text(json.dumps(record))
    code = _eval(run_copy, tmp_path / "e", "--suite", "clean")
    if damage == "flipped":  # a readable file with other numbers: only a digest can tell
        assert code in (0, None)
        return
    assert code == 2
    msg = _error(capsys)
    assert f"'{weights}' is not a readable safetensors file" in msg and "--resume" in msg


def test_weights_that_do_not_fit_are_one_line_on_eval(run_copy, tmp_path, capsys):
    cfg = yaml.safe_load((run_copy / "config.yaml").read_text())
    cfg["model"]["kwargs"] = {"width": 16}
    (run_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _eval(run_copy, tmp_path / "e", "--suite", "clean") == 2
    assert "does not fit this model" in _error(capsys)


def test_a_results_lock_held_too_long_is_refused_naming_its_holder(run_copy, tmp_path, monkeypatch):
    """Processes share a results folder (each holds its lock only to read or write results.json);
    a lock held past the wait (a stuck process) is an error naming the holder's pid."""
    from robustune.eval import evaluate, store

    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.5)
    out = tmp_path / "eval"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from robustune.files import folder_lock\n"
         f"with folder_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = load_config(None, ["model.name=small_cnn"])
        with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
            evaluate(torch.nn.Linear(2, 2), [], cfg.eval, out)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "results.json").exists()


def test_prompts_of_another_shape_name_the_shapes(tmp_path, capsys):
    overrides = ["model.weights=null", "data.shots=1", "train.max_steps=1", "train.eval_every=0"]
    run = tmp_path / "fap"
    train(load_config("configs/clip_tiny_digits_fap.yaml", overrides), run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["method"]["params"]["n_ctx"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert _eval(run, tmp_path / "e", "--suite", "clean", "--n-examples", "4") == 2
    msg = _error(capsys)
    assert "does not hold the prompts of this method" in msg and "file (2, 64) vs method (4, 64)" in msg


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noptim: {lr: 0.1\ntrain:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match=rf"{bad}: line \d+, column \d+: YAML syntax error"):
        load_config(bad)
    with pytest.raises(ConfigError, match="optim.lr=\\[0.1"):
        load_config(None, ["optim.lr=[0.1"])


def test_weights_none_says_how_to_get_random_init(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "configs/erm_digits.yaml", "--out", str(tmp_path / "r"), "--set", "model.weights=none"])
    assert exc.value.code == 2
    assert "`model.weights: null`" in _error(capsys)


def test_unknown_dataset_options_and_model_kwargs_are_named(tmp_path):
    cfg = load_config("configs/clip_tiny_digits_fap.yaml", ["data.options.shot=2", "model.weights=null"])
    with pytest.raises(ConfigError, match="'data.options.shot'. Did you mean 'data.options.shots'"):
        train(cfg, tmp_path / "a")
    cfg = load_config(None, ["model.name=small_cnn", "model.kwargs={widht: 8}"])
    with pytest.raises(ConfigError, match="'model.kwargs.widht'. Did you mean 'model.kwargs.width'"):
        train(cfg, tmp_path / "b")
    cfg = load_config(None, ["model.name=resnet18", "model.kwargs={drop_rat: 0.1}"])
    with pytest.raises(ConfigError, match="Did you mean 'model.kwargs.drop_rate'"):
        train(cfg, tmp_path / "c")
