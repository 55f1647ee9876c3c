"""Hostile and broken inputs: a clear error, and nothing written before is lost."""

import pytest
import torch

from robustune.config import load_config
from robustune.data.digits import TensorImageDataset
from robustune.data.registry import DATASETS
from robustune.engine import train

FAST = ["data.train_subset=64", "data.batch_size=32", "train.epochs=2", "train.eval_every=0",
        "model.name=small_cnn"]


def test_labels_outside_range_are_named(tmp_path):
    def bad_digits(split="train", **_):
        x = torch.rand(40, 3, 32, 32)
        targets = [i % 10 for i in range(40)]
        if split == "val":
            targets[3] = 12
        return TensorImageDataset(x, targets, [str(i) for i in range(10)])

    DATASETS.add("bad_digits_test", bad_digits)
    cfg = load_config(None, FAST + ["data.name=bad_digits_test"])
    with pytest.raises(ValueError, match=r"val split has 1 label\(s\) outside \[0, 10\), e.g. 12"):
        train(cfg, tmp_path)


def test_init_from_another_architecture_is_refused(tmp_path):
    from robustune.errors import WeightsUnavailableError

    cfg = load_config(None, FAST + ["train.epochs=1"])
    train(cfg, tmp_path / "cnn")
    other = load_config(None, FAST + ["model.name=vit_tiny32", f"model.init_from={tmp_path / 'cnn'}"])
    with pytest.raises(WeightsUnavailableError, match="another architecture or class count"):
        train(other, tmp_path / "vit")
