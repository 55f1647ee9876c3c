"""The CoOp dataset loaders on tiny fake trees, K-shot sampling and base-to-new class subsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from robustune.data import create_dataset
from robustune.data.coop import SPECS, MissingSplitError
from robustune.data.fewshot import base_new_labels, kshot_cache_path, kshot_indices, subset_labels


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value % 256, dtype=np.uint8)).save(path)


def _class_tree(image_dir: Path, classes: list[str], per_class: int) -> None:
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(image_dir / name / f"{name}_{i:03d}.png", 10 * c + i)


@pytest.fixture
def caltech_root(tmp_path: Path) -> Path:
    """``root/caltech-101/101_ObjectCategories`` with the two classes CoOp drops, no split file."""
    _class_tree(tmp_path / "caltech-101" / "101_ObjectCategories",
                ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "anchor"], 10)
    return tmp_path


def test_caltech101_drops_background_and_faces_easy(caltech_root: Path):
    splits = {s: create_dataset("caltech101", s, root=str(caltech_root)) for s in ("train", "val", "test")}
    assert splits["train"].classes == ["face", "leopard", "accordion", "anchor"]
    assert splits["train"].template == "a photo of a {}."
    assert [len(d) for d in splits.values()] == [20, 8, 12]  # 50 / 20 / 30 % of 10 per class
    paths = [set(p for p, _ in d.samples) for d in splits.values()]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])
    for d in splits.values():
        assert sorted(set(d.targets)) == [0, 1, 2, 3]
        assert not any("BACKGROUND_Google" in p or "Faces_easy" in p for p, _ in d.samples)
        for p, y in d.samples:  # labels follow the kept folders in sorted order
            assert Path(p).parent.name == ["Faces", "Leopards", "accordion", "anchor"][y]
    image, label = splits["test"][0]
    assert image.shape == (3, 8, 8) and 0 <= image.min() and image.max() <= 1 and label == 0


def test_caltech101_split_file_listing_dropped_classes_is_filtered(caltech_root: Path):
    ddir = caltech_root / "caltech-101"
    split = {s: [[f"BACKGROUND_Google/BACKGROUND_Google_00{i}.png", 0, "BACKGROUND_Google"],
                 [f"accordion/accordion_00{i}.png", 1, "accordion"],
                 [f"Faces_easy/Faces_easy_00{i}.png", 2, "Faces_easy"],
                 [f"anchor/anchor_00{i}.png", 3, "anchor"]] for i, s in enumerate(("train", "val", "test"))}
    (ddir / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    ds = create_dataset("caltech101", "val", root=str(ddir))  # root may be the dataset's own folder
    assert ds.classes == ["accordion", "anchor"]
    assert ds.targets == [0, 1]
    assert [Path(p).name for p, _ in ds.samples] == ["accordion_001.png", "anchor_001.png"]


def test_fgvc_aircraft_reads_its_txt_splits(tmp_path: Path):
    ddir = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Cessna 172"]
    (ddir / "images").mkdir(parents=True)
    (ddir / "variants.txt").write_text("\n".join(variants) + "\n")
    lines = {"train": ["0001 707-320", "0002 A300B4", "0003 Cessna 172", "0004 Cessna 172"],
             "val": ["0005 707-320", "0006 A300B4"], "test": ["0007 Cessna 172"]}
    for split, rows in lines.items():
        (ddir / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
        for row in rows:
            _png(ddir / "images" / f"{row.split()[0]}.jpg", int(row.split()[0]))
    train = create_dataset("fgvc_aircraft", "train", root=str(tmp_path))
    assert train.classes == variants and train.targets == [0, 1, 2, 2]
    assert train.template == "a photo of a {}, a type of aircraft."
    assert create_dataset("fgvc_aircraft", "test", root=str(tmp_path)).targets == [2]


def test_split_file_datasets_and_templates(tmp_path: Path):
    ddir = tmp_path / "dtd"
    _class_tree(ddir / "images", ["banded", "zig_zagged"], 2)
    zig = lambda i: [f"zig_zagged/zig_zagged_00{i}.png", 1, "zig_zagged"]  # noqa: E731
    split = {"train": [["banded/banded_000.png", 0, "banded"], zig(0)],
             "val": [["banded/banded_001.png", 0, "banded"]], "test": [zig(1)]}
    (ddir / "split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    ds = create_dataset("dtd", "train", root=str(tmp_path))
    assert ds.classes == ["banded", "zig zagged"] and ds.template == "{} texture."
    assert SPECS["eurosat"].template == "a centered satellite photo of {}."
    assert SPECS["ucf101"].template == "a photo of a person doing {}."
    with pytest.raises(FileNotFoundError, match="split_zhou_OxfordPets.json"):
        create_dataset("oxford_pets", "train", root=str(tmp_path / "dtd"))


def test_fewshot_imagenet_classnames_and_val_drawn_from_train(tmp_path: Path):
    ddir = tmp_path / "imagenet"
    for wnid in ("n001", "n002"):
        for i in range(6):
            _png(ddir / "images" / "train" / wnid / f"{i}.JPEG", i)
        _png(ddir / "images" / "val" / wnid / "v.JPEG", 1)
    (ddir / "classnames.txt").write_text("n002 goldfish\nn001 tench\n")
    test = create_dataset("fewshot_imagenet", "test", root=str(tmp_path))
    assert test.classes == ["tench", "goldfish"] and len(test) == 2
    with pytest.raises(MissingSplitError):
        create_dataset("fewshot_imagenet", "val", root=str(tmp_path))
    kw = dict(source="fewshot_imagenet", root=str(tmp_path), shots=2, seed=0)
    train, val = create_dataset("fewshot", "train", **kw), create_dataset("fewshot", "val", **kw)
    assert len(train) == 4 and len(val) == 4  # val = min(K, 4) = 2 per class
    assert not set(train.indices) & set(val.indices)  # both index the train folder: disjoint
    assert val.parent.samples == train.parent.samples


def test_base_new_split_is_ceil_half_and_disjoint():
    assert base_new_labels(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert base_new_labels(7) == ([0, 1, 2, 3], [4, 5, 6])
    assert subset_labels(3, "all") == [0, 1, 2]
    with pytest.raises(ValueError, match="base"):
        subset_labels(4, "bsae")


def test_digits_base_and_new_views_remap_labels_and_keep_names():
    base = create_dataset("fewshot", "test", source="digits", subset="base")
    new = create_dataset("fewshot", "test", source="digits", subset="new")
    assert base.classes == ["zero", "one", "two", "three", "four"]
    assert new.classes == ["five", "six", "seven", "eight", "nine"]
    assert sorted(set(base.targets)) == sorted(set(new.targets)) == [0, 1, 2, 3, 4]
    assert not set(base.indices) & set(new.indices)
    assert len(base) + len(new) == 360
    parent = base.parent
    for view, offset in ((base, 0), (new, 5)):
        for i in (0, len(view) - 1):
            _, y = view[i]
            assert y == view.targets[i] == parent.targets[view.indices[i]] - offset


@pytest.mark.parametrize("seed", [0, 1])
def test_kshot_is_deterministic_disjoint_and_cached(seed: int):
    kw = dict(source="digits", shots=8, seed=seed)
    train = create_dataset("fewshot", "train", **kw)
    val = create_dataset("fewshot", "val", **kw)
    assert len(train) == 80 and len(val) == 40  # val = min(8, 4) shots per class
    assert np.bincount(train.targets).tolist() == [8] * 10
    assert train.parent is not val.parent  # train and val come from disjoint splits
    path = kshot_cache_path("digits", None, 8, seed)
    assert path.is_file()
    cached = json.loads(path.read_text())
    assert cached["train"] == train.indices and cached["val"] == val.indices and cached["seed"] == seed
    again = create_dataset("fewshot", "train", cache=False, **kw)
    assert again.indices == train.indices  # same seed → same images, cache or not
    other = create_dataset("fewshot", "train", source="digits", shots=8, seed=seed + 5, cache=False)
    assert other.indices != train.indices
    from robustune.config import DataConfig
    from robustune.data import load_splits

    plain = load_splits(DataConfig(name="digits", shots=8, subset_seed=seed)).train
    assert plain.indices == train.indices  # the same draw as data.shots on the plain dataset
    base = create_dataset("fewshot", "train", subset="base", **kw)
    assert set(train.parent.targets[i] for i in base.indices) == {0, 1, 2, 3, 4}
    assert set(base.indices) <= set(train.indices)  # base-to-new keeps the K-shot draw


def test_kshot_indices_without_val_split_are_disjoint_and_refresh_stale_cache(tmp_path: Path):
    targets = [i % 3 for i in range(30)]
    rec = kshot_indices(targets, None, 5, seed=0, cache_path=tmp_path / "k.json")
    assert len(rec["train"]) == 15 and len(rec["val"]) == 12 and rec["val_from"] == "train"
    assert not set(rec["train"]) & set(rec["val"])
    assert kshot_indices(targets, None, 5, seed=0, cache_path=tmp_path / "k.json") == rec
    changed = kshot_indices(targets[:-3], None, 5, seed=0, cache_path=tmp_path / "k.json")
    assert changed["fingerprint"] != rec["fingerprint"] and max(changed["train"]) < 27


def test_fewshot_view_errors_are_clear():
    with pytest.raises(ValueError, match="source"):
        create_dataset("fewshot", "train")
    with pytest.raises(ValueError, match="train, val, test"):
        create_dataset("fewshot", "all", source="digits")


SPLIT_FILE_DATASETS = [n for n in SPECS if n not in ("fgvc_aircraft", "fewshot_imagenet")]


@pytest.mark.parametrize("name", SPLIT_FILE_DATASETS)
def test_every_split_file_dataset_reads_its_coop_layout(tmp_path: Path, name: str):
    spec = SPECS[name]
    ddir = tmp_path / spec.folder
    image_dir = ddir / spec.image_dir if spec.image_dir else ddir
    rows = {s: [[f"sub/{s}_{y}.png", y, f"class_{y}"] for y in range(2)] for s in ("train", "val", "test")}
    for split_rows in rows.values():
        for rel, y, _ in split_rows:
            _png(image_dir / rel, y)
    (ddir / spec.split_file).write_text(json.dumps(rows))
    ds = create_dataset(name, "test", root=str(tmp_path))
    assert ds.classes == ["class 0", "class 1"] and ds.targets == [0, 1]
    assert ds.template == spec.template and "{}" in ds.template
    assert [Path(p).name for p, _ in ds.samples] == ["test_0.png", "test_1.png"]


def test_coop_dataset_through_load_splits_is_sized_for_the_model(caltech_root: Path):
    from robustune.config import DataConfig
    from robustune.data import build_loader, load_splits
    from robustune.models import create_classifier

    model = create_classifier("vit_tiny32", num_classes=2)
    cfg = DataConfig(name="fewshot", root=str(caltech_root),
                     options={"source": "caltech101", "subset": "new", "shots": 3, "seed": 0})
    splits = load_splits(cfg, model)
    assert splits.classes == ["accordion", "anchor"]
    assert len(splits.train) == 6 and len(splits.val) == 4 and len(splits.test) == 6  # val: 2 per class
    images, labels = next(iter(build_loader(splits.train, batch_size=6)))
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
