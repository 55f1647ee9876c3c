import logging

import numpy as np
import pytest
import torch
from PIL import Image

from robustune.data import class_balanced_subset, create_dataset, few_shot_indices, list_datasets
from robustune.data.digits import SPLIT_SIZES


def test_digits_splits_sizes_range_and_disjoint():
    sets = {s: create_dataset("digits", s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sets.items()} == SPLIT_SIZES
    for ds in sets.values():
        assert ds.images.dtype == torch.float32 and ds.images.shape[1:] == (3, 32, 32)
        assert ds.images.min() >= 0 and ds.images.max() <= 1
        assert ds.classes[0] == "zero" and len(ds.classes) == 10
    from robustune.data.digits import _digit_split_indices

    idx = _digit_split_indices()
    union = np.concatenate([idx[s] for s in ("train", "val", "test")])
    assert len(np.unique(union)) == len(union) == len(create_dataset("digits", "all"))
    for s in ("train", "val", "test"):  # stratified: every class in every split
        assert np.bincount(sets[s].targets, minlength=10).min() > 0


def test_digits_split_is_fixed():
    a, b = create_dataset("digits", "test"), create_dataset("digits", "test")
    assert torch.equal(a.images, b.images) and a.targets == b.targets


def test_unknown_dataset_lists_choices():
    with pytest.raises(KeyError, match="Valid choices: .*digits"):
        create_dataset("digitz")
    assert "digits" in list_datasets()


def _write_tree(root, n=3):
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")


def test_folder_skips_corrupt_files_with_one_warning(tmp_path, caplog):
    _write_tree(tmp_path / "train")
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    good = tmp_path / "train" / "dog" / "0.png"
    (tmp_path / "train" / "dog" / "trunc.png").write_bytes(good.read_bytes()[:20])
    (tmp_path / "train" / "empty_class").mkdir()
    with caplog.at_level(logging.WARNING):
        ds = create_dataset("folder", "train", root=str(tmp_path), allow_empty_classes=True, verify=True)
    assert len(ds) == 6
    assert any("skipped 2 unreadable" in r.message for r in caplog.records)
    assert any("no images" in r.message for r in caplog.records)
    x, y = ds[0]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_folder_survives_a_file_broken_after_indexing(tmp_path, caplog):
    _write_tree(tmp_path / "train")
    ds = create_dataset("folder", "train", root=str(tmp_path))
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        images = [ds[i][0] for i in range(len(ds))]
    assert len(images) == len(ds)
    assert any("is unreadable" in r.message and "robustune verify" in r.message for r in caplog.records)


def test_folder_split_subdirectories(tmp_path):
    _write_tree(tmp_path / "train", 2)
    _write_tree(tmp_path / "val", 1)
    assert len(create_dataset("folder", "train", root=str(tmp_path))) == 4
    assert len(create_dataset("folder", "val", root=str(tmp_path))) == 2


def test_class_balanced_subset_and_few_shot_are_seeded_and_balanced():
    targets = create_dataset("digits", "train").targets
    sub = class_balanced_subset(targets, 50, seed=1)
    assert len(sub) == 50 and sub == class_balanced_subset(targets, 50, seed=1)
    counts = np.bincount([targets[i] for i in sub], minlength=10)
    assert counts.max() - counts.min() <= 1
    shots = few_shot_indices(targets, 4, seed=3)
    assert np.bincount([targets[i] for i in shots]).tolist() == [4] * 10
    assert shots == few_shot_indices(targets, 4, seed=3) and shots != few_shot_indices(targets, 4, seed=4)


def test_imagenet_layout_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="root/train/<wnid>"):
        create_dataset("imagenet", "train", root=str(tmp_path))
