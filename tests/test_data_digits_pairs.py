import numpy as np
import pytest
import torch

from robustune.data import create_dataset, list_datasets
from robustune.data.digits import _digit_split_indices
from robustune.data.digits_pairs import PER_CLASS, _pairs_arrays


@pytest.fixture(scope="module")
def pairs():
    return {s: create_dataset("digits_pairs", s) for s in ("train", "val", "test")}


def test_registered_with_100_named_classes_and_per_class_counts(pairs, capsys):
    assert "digits_pairs" in list_datasets()
    from robustune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["list", "datasets"])
    assert exc.value.code in (0, None) and "digits_pairs" in capsys.readouterr().out.split()
    for split, ds in pairs.items():
        assert ds.classes == [f"{a}{b}" for a in range(10) for b in range(10)]
        counts = np.bincount(ds.targets, minlength=100)
        assert counts.min() == counts.max() == PER_CLASS[split]
    assert PER_CLASS["train"] >= 80 and PER_CLASS["test"] >= 30


def test_value_range_shape_and_labels_match_the_two_source_digits(pairs):
    from sklearn.datasets import load_digits

    y = load_digits().target
    for ds in pairs.values():
        assert ds.images.dtype == torch.float32 and ds.images.shape[1:] == (3, 32, 32)
        assert ds.images.min() >= 0 and ds.images.max() <= 1 and ds.images.max() > 0.9
        t = np.asarray(ds.targets)
        src = ds.sources.numpy()
        assert (y[src[:, 0]] == t // 10).all() and (y[src[:, 1]] == t % 10).all()
        assert (src[:, 0] != src[:, 1]).all()  # "33" is two different 3s
        image, label = ds[123]
        assert image.shape == (3, 32, 32) and label == ds.targets[123]
    # two different source images: the halves of a "00" are not equal
    img = pairs["test"].images
    assert not torch.equal(img[0, :, :, :16], img[0, :, :, 16:])


def test_splits_use_disjoint_source_images_from_the_digits_splits(pairs):
    digit_splits = _digit_split_indices()
    used = {s: set(ds.sources.flatten().tolist()) for s, ds in pairs.items()}
    for split in ("train", "val", "test"):
        assert used[split] <= set(digit_splits[split].tolist())
    assert not used["train"] & used["test"] and not used["train"] & used["val"]
    assert not used["val"] & used["test"]
    # balanced reuse: every test source image is used, about equally often
    n_use = np.bincount(pairs["test"].sources.flatten().numpy())
    assert len(used["test"]) == len(digit_splits["test"]) and n_use.max() <= 2 * n_use[n_use > 0].min()


def test_deterministic_from_the_seed_and_regenerated_identically(pairs, tmp_path, monkeypatch):
    first = pairs["val"]
    monkeypatch.setenv("ROBUSTUNE_CACHE", str(tmp_path))  # no disk cache: generated again
    _pairs_arrays.cache_clear()
    again = create_dataset("digits_pairs", "val")
    assert torch.equal(first.images, again.images) and first.targets == again.targets
    assert torch.equal(first.sources, again.sources)
    assert len(list((tmp_path / "datasets").glob("digits_pairs-val-*.npz"))) == 1
    other = create_dataset("digits_pairs", "val", seed=1)
    assert not torch.equal(first.sources, other.sources)
    small = create_dataset("digits_pairs", "test", per_class=2, image_size=16)
    assert len(small) == 200 and small.images.shape[1:] == (3, 16, 16)


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="unknown digits_pairs split 'all'.*train, val, test"):
        create_dataset("digits_pairs", "all")
    with pytest.raises(ValueError, match="even image_size"):
        create_dataset("digits_pairs", "test", image_size=33)
    with pytest.raises(ValueError, match="per_class must be positive"):
        create_dataset("digits_pairs", "test", per_class=0)


def test_fewshot_base_to_new_is_50_plus_50_with_the_number_template():
    base = create_dataset("fewshot", "train", source="digits_pairs", subset="base", shots=4, seed=1)
    new = create_dataset("fewshot", "test", source="digits_pairs", subset="new")
    assert base.classes == [f"{i:02d}" for i in range(50)] and len(base) == 200
    assert new.classes == [f"{i:02d}" for i in range(50, 100)] and len(new) == 50 * PER_CLASS["test"]
    assert base.template == "a photo of the number {}."


def test_vit_erm_preset_trains_on_digits_pairs(tmp_path):
    """configs/erm_digits_pairs_vit.yaml (the tiny ViT of issue 12) runs as-is: one step, 100 classes.

    Ours, for test time only: 2 images per class and split instead of 100 / 10 / 30.
    """
    from robustune.config import load_config
    from robustune.engine import train

    reference = load_config("configs/erm_digits_pairs_vit.yaml")
    cfg = load_config("configs/erm_digits_pairs_vit.yaml",
                      ["train.max_steps=1", "train.log_every=1", "data.options.per_class=2"])
    result = train(cfg, tmp_path / "run")
    assert cfg.model == reference.model and cfg.optim == reference.optim
    assert reference.model.name == "vit_tiny32" and reference.data.name == "digits_pairs"
    assert result.method.model.num_classes == 100 and (tmp_path / "run" / "model.safetensors").exists()
