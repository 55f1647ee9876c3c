"""Your own data: folder layouts, splits and class lists give the right number or a clear error.

Every bad input is built as real PNG files on disk (issue 11, items 1-3 and 8).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustune.config import ConfigError, load_config

TINY = ["data.name=folder", "model.name=small_cnn", "model.kwargs={width: 4}", "train.epochs=1",
        "train.eval_every=0", "data.batch_size=8", "data.eval_batch_size=16"]


def write_images(folder: Path, n: int, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), (value * 40 + i) % 256, np.uint8)).save(folder / f"{i}.png")


def write_tree(root: Path, splits: dict[str, tuple[str, ...]], n: int = 3) -> Path:
    for split, classes in splits.items():
        for k, c in enumerate(classes):
            write_images(root / split / c if split else root / c, n, k)
    return root


def cli(*argv: str) -> int:
    from robustune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    return exc.value.code or 0


@pytest.fixture(scope="module")
def photo_run(tmp_path_factory):
    """A 1-epoch run on root/train + root/val (no test/), configured with data.test_split=val."""
    from robustune.engine import train

    base = tmp_path_factory.mktemp("photos")
    root = write_tree(base / "photos", {"train": ("ant", "bee", "cat"), "val": ("ant", "bee", "cat")}, n=4)
    cfg = load_config(None, [*TINY, f"data.root={root}", "data.test_split=val", "name=photo"])
    train(cfg, base / "run")
    return base / "run", root


def test_eval_uses_the_runs_test_split_and_names_missing_splits(photo_run, tmp_path, capsys):
    run, root = photo_run
    assert cli("eval", str(run), "--suite", "clean", "--eps", "", "--out", str(tmp_path / "e")) == 0
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    assert results["dataset"]["split"] == "val"
    assert results["cells"]["clean"]["n"] == 12  # the 3 × 4 val images, not train + val as 2 classes
    capsys.readouterr()
    assert cli("eval", str(run), "--split", "test", "--suite", "clean", "--out", str(tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert "split 'test' not found" in err and "train, val" in err
    assert not (tmp_path / "t").exists()


def test_analyze_names_a_missing_split(photo_run, tmp_path, capsys):
    run, root = photo_run
    out = tmp_path / "photos-c"
    assert cli("corrupt", "folder", "--root", str(root), "--split", "val", "--out", str(out),
               "--corruptions", "contrast", "--severities", "3") == 0
    capsys.readouterr()
    assert cli("corrupt", str(root), "--out", str(tmp_path / "wrong"), "--corruptions", "contrast") == 2
    assert "holds split folders (train, val)" in capsys.readouterr().err  # not two classes "train", "val"
    assert cli("analyze", str(run), "--corruption-root", str(out), "--split", "test",
               "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "generated from the 'val' split" in err and "--split val" in err
    plain = tmp_path / "plain-c"  # a copy of a class folder records no split: the split rule applies
    assert cli("corrupt", str(root / "val"), "--out", str(plain), "--corruptions", "contrast", "--severities", "3") == 0
    capsys.readouterr()
    assert cli("analyze", str(run), "--corruption-root", str(plain), "--split", "test",
               "--out", str(tmp_path / "a")) == 2
    assert "split 'test' not found" in capsys.readouterr().err  # was: RuntimeError index 2 out of bounds
    assert not (tmp_path / "a").exists()


def test_training_without_the_configured_test_split_is_an_error(tmp_path):
    from robustune.data import load_splits

    root = write_tree(tmp_path / "photos", {"train": ("ant", "bee"), "val": ("ant", "bee")})
    cfg = load_config(None, [*TINY, f"data.root={root}"])  # data.test_split defaults to test
    with pytest.raises(FileNotFoundError, match=r"split 'test' not found.*the splits under .* are: train, val"):
        load_splits(cfg.data)


def test_empty_class_folder_is_named(tmp_path):
    from robustune.data import load_splits

    root = write_tree(tmp_path / "photos", {"train": ("ant", "bee"), "val": ("ant", "bee")})
    (root / "train" / "aardvark").mkdir()  # sorts first: would shift every val label by one
    cfg = load_config(None, [*TINY, f"data.root={root}", "data.test_split=val"])
    with pytest.raises(FileNotFoundError, match=r"train/aardvark.*data.allow_empty_classes=true"):
        load_splits(cfg.data)
    allowed = load_config(None, [*TINY, f"data.root={root}", "data.test_split=val", "data.allow_empty_classes=true"])
    with pytest.raises(ValueError, match=r"missing in the 'val' split: 'aardvark'"):
        load_splits(allowed.data)


def test_eval_split_with_other_classes_than_the_weights(photo_run, tmp_path, capsys):
    run, root = photo_run
    copy_root, copy_run = tmp_path / "photos", tmp_path / "run"
    shutil.copytree(root, copy_root)
    shutil.copytree(run, copy_run)
    cfg = (copy_run / "config.yaml").read_text().replace(str(root), str(copy_root))
    (copy_run / "config.yaml").write_text(cfg)
    for split in ("train", "val"):  # renamed after training: same count, other names
        (copy_root / split / "cat").rename(copy_root / split / "cow")
    assert cli("eval", str(copy_run), "--suite", "clean", "--eps", "") == 2
    err = capsys.readouterr().err
    assert "run.json" in err and "missing in the evaluated split 'val': 'cat'" in err and "'cow'" in err


def test_unreadable_images_warned_once_per_split_with_the_full_path(photo_run, tmp_path, capsys):
    run, root = photo_run
    copy_root = tmp_path / ("a_rather_long_folder_name_" * 4) / "photos"
    shutil.copytree(root, copy_root)
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text((run / "config.yaml").read_text().replace(str(root), str(copy_root)))
    bad = {split: copy_root / split / "bee" / f"broken_{split}_{'x' * 60}.png" for split in ("train", "val")}
    for path in bad.values():
        path.write_bytes(b"not a png")
    assert cli("eval", str(tmp_path / "run"), "--suite", "clean", "--eps", "") == 0
    err = capsys.readouterr().err
    for path in bad.values():  # the eval loads train twice (class count, splits) and val once
        lines = [ln for ln in err.splitlines() if "unreadable" in ln and str(path.parent.parent) + " " in ln]
        assert len(lines) == 1 and str(path) in lines[0] and "skipped 1 unreadable" in lines[0], err


def test_flat_root_needs_a_held_out_fraction(tmp_path):
    from robustune.data import load_splits

    root = write_tree(tmp_path / "photos", {"": ("ant", "bee", "cat")}, n=5)
    with pytest.raises(FileNotFoundError, match=r"same images.*data.val_fraction=0.2"):
        load_splits(load_config(None, [*TINY, f"data.root={root}"]).data)
    split_root = write_tree(tmp_path / "split", {"train": ("ant", "bee"), "val": ("ant", "bee")})
    with pytest.raises(FileNotFoundError, match=r"Point data.root at .*split' \(it holds the splits train, val\)"):
        load_splits(load_config(None, [*TINY, f"data.root={split_root / 'train'}"]).data)  # --set data.root=photos/train
    cfg = load_config(None, [*TINY, f"data.root={root}", "data.val_fraction=0.4"]).data
    a, b = load_splits(cfg), load_splits(cfg)
    train = {p for p, _ in a.train.samples}
    val = {p for p, _ in a.val.samples}
    assert len(train) == 9 and len(val) == 6 and not train & val  # 2 of 5 per class held out
    assert val == {p for p, _ in a.test.samples} == {p for p, _ in b.val.samples}  # seeded, stable
    assert a.classes == ["ant", "bee", "cat"] and sorted(set(a.val.targets)) == [0, 1, 2]


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"), ("train.epochs=-1", "train.epochs"),
    ("data.batch_size=0", "data.batch_size"), ("optim.lr=0", "optim.lr"),
    ("data.val_fraction=1.5", "data.val_fraction"), ("eval.pgd_steps=0", "eval.pgd_steps"),
])
def test_out_of_range_numbers_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')} must be"):
        load_config(None, [override])


def test_cli_train_with_zero_epochs_writes_nothing(tmp_path, capsys):
    assert cli("train", "configs/erm_digits.yaml", "--set", "train.epochs=0", "--out", str(tmp_path / "r")) == 2
    assert "train.epochs must be ≥ 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_eps_in_255_units_is_an_error(photo_run, tmp_path, capsys):
    run, _ = photo_run
    assert cli("eval", str(run), "--eps", "8", "--out", str(tmp_path / "e")) == 2
    assert "8/255" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"method.params.eps = 8 .*8/255"):
        from robustune.methods import create_method
        from robustune.models import create_classifier

        create_method("pgd_at", create_classifier("small_cnn", 3), {"eps": 8}, num_classes=3)
    with pytest.raises(ConfigError, match=r"eval.eps\[1\] = 4 .*4/255"):
        load_config(None, ["eval.eps=[1/255, 4]"])


@pytest.mark.parametrize("device, message", [("gpu", "not a torch device"), ("cuda", "no usable CUDA")])
def test_bad_device_is_one_clear_line(device, message, tmp_path, capsys):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert cli("train", "configs/erm_digits.yaml", "--set", f"train.device={device}", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: train.device='{device}'") and message in err and "\n" not in err


def test_resuming_a_finished_run_touches_nothing(photo_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(photo_run[0], run)

    def files():  # the run folder's lock file is the locking layer's, rewritten by every command
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.rglob("*")
                if p.is_file() and p.name != ".robustune.lock"}

    before = files()
    assert cli("train", str(run / "config.yaml"), "--out", str(run), "--resume") == 0
    assert "already finished" in capsys.readouterr().out
    assert files() == before and len(before) >= 6


def test_written_files_follow_the_umask(tmp_path):
    import os

    import torch

    from robustune.config import RunConfig
    from robustune.engine.checkpoint import save_checkpoint
    from robustune.files import save_tensors
    from robustune.runs.record import write_run_record
    from robustune.files import write_json

    old = os.umask(0o022)
    try:
        write_run_record(tmp_path, RunConfig(), classes=["a"])
        save_tensors(tmp_path / "model.safetensors", {"w": torch.zeros(2)})
        write_json(tmp_path / "report.json", {})
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        ckpt = save_checkpoint(tmp_path, 0, 1, {"w": torch.zeros(2)}, opt, None)
    finally:
        os.umask(old)
    for name in ("config.yaml", "model.safetensors", "run.json", "report.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert ckpt.stat().st_mode & 0o777 == 0o755
