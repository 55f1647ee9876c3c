"""Training recipes: timm augmentation of the training split (ImageNet presets), flips with boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from robustune.config import ConfigError, DataConfig


def test_detection_flip_mirrors_boxes():
    from robustune.data import create_dataset

    ds = create_dataset("digits_det", "train", n_images=4)
    image, target = ds[0]
    ds.hflip = 1.0
    flipped, ftarget = ds[0]
    assert torch.equal(flipped, image.flip(-1))
    w = image.shape[-1]
    want = target["boxes"].clone()
    want[:, 0], want[:, 2] = w - target["boxes"][:, 2], w - target["boxes"][:, 0]
    assert torch.allclose(ftarget["boxes"], want)
    assert bool((ftarget["boxes"][:, 2] > ftarget["boxes"][:, 0]).all())
    assert torch.equal(ftarget["labels"], target["labels"])


def test_timm_augmentation_applies_to_the_training_split_only(tmp_path):
    from robustune.data import load_splits
    from robustune.models import create_classifier

    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((48, 40, 3), 90 * i, np.uint8)).save(tmp_path / split / c / f"{i}.jpg")
    model = create_classifier("small_cnn", num_classes=2)
    cfg = DataConfig(name="folder", root=str(tmp_path), test_split=None, train_augment="timm")
    splits = load_splits(cfg, model)
    names = [type(t).__name__ for t in splits.train.transform.transforms]
    assert "RandomResizedCropAndInterpolation" in names and names[-1] == "ToDtype"
    x, _ = splits.train[0]
    assert x.dtype == torch.float32 and x.shape[-1] == model.input_size[-1] and 0 <= x.min() <= x.max() <= 1
    assert "RandomResizedCropAndInterpolation" not in [type(t).__name__ for t in splits.val.transform.transforms]
    assert load_splits(DataConfig(name="folder", root=str(tmp_path), test_split=None), model).train.transform \
        is not None


def test_augmentation_that_does_not_apply_is_named():
    from robustune.data import load_splits

    with pytest.raises(ConfigError, match="does not apply.*timm for image folders"):
        load_splits(DataConfig(name="digits", train_augment="timm"))
    with pytest.raises(ConfigError, match="valid: timm, hflip"):
        load_splits(DataConfig(name="digits", train_augment="mixup"))
