"""The cached folder file index (robustune.data.file_index): one scan per tree, rebuilt when it changes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from robustune.data import file_index


def _tree(root, classes=("n01", "n02", "n03"), n=3):
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_the_index_is_built_once_per_tree_for_train_eval_and_class_count(tmp_path):
    from robustune.config import load_config
    from robustune.data import load_splits
    from robustune.runs.build import count_classes
    from robustune.data.registry import create_dataset

    root = _tree(tmp_path / "data")
    cfg = load_config(None, [f"data.name=folder", f"data.root={root}", "data.test_split=val",
                             "model.name=small_cnn"])
    before = file_index.SCANS["count"]
    assert count_classes(cfg) == 3  # folder names only: no scan
    assert file_index.SCANS["count"] == before
    load_splits(cfg.data)  # train + val: one scan each
    assert file_index.SCANS["count"] == before + 2
    for _ in range(3):  # later runs, evaluations and ranks reuse the cached index
        load_splits(cfg.data)
        create_dataset("folder", "val", root=str(root))
    assert file_index.SCANS["count"] == before + 2


def test_a_changed_tree_is_rescanned(tmp_path):
    from robustune.data.registry import create_dataset

    root = _tree(tmp_path / "data")
    assert len(create_dataset("folder", "train", root=str(root))) == 9
    before = file_index.SCANS["count"]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "n02" / "new.png")
    ds = create_dataset("folder", "train", root=str(root))
    assert len(ds) == 10 and file_index.SCANS["count"] == before + 1
    (root / "train" / "n01" / "0.png").unlink()
    assert len(create_dataset("folder", "train", root=str(root))) == 9
    assert file_index.SCANS["count"] == before + 2
    create_dataset("folder", "train", root=str(root))
    assert file_index.SCANS["count"] == before + 2


def test_the_index_lists_what_a_walk_finds(tmp_path):
    root = _tree(tmp_path / "data")
    (root / "train" / "n01" / "nested").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "n01" / "nested" / "x.png")
    (root / "train" / "n01" / "notes.txt").write_text("not an image")
    samples = file_index.folder_samples(root / "train", ["n01", "n02", "n03"], (".png",))
    want = [(str(p), c) for c, name in enumerate(["n01", "n02", "n03"])
            for p in sorted((root / "train" / name).rglob("*.png"))]
    assert sorted(samples) == sorted(want) and [s[1] for s in samples] == sorted(s[1] for s in samples)


def test_verify_is_off_by_default_and_the_verify_command_lists_bad_files(tmp_path, capsys):
    from robustune.cli import main
    from robustune.data.registry import create_dataset

    root = _tree(tmp_path / "data")
    (root / "val" / "n02" / "broken.png").write_bytes(b"not an image")
    assert len(create_dataset("folder", "val", root=str(root))) == 10  # not decoded at start-up
    assert len(create_dataset("folder", "val", root=str(root), verify=True)) == 9
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{name: folder, root: {root}, val_split: val, test_split: null}}\n")
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(cfg)])
    out = capsys.readouterr()
    assert exc.value.code != 0 and "val: 10 files, 1 unreadable" in out.out
    assert str(root / "val" / "n02" / "broken.png") in out.out and "data.options.verify=true" in out.err
