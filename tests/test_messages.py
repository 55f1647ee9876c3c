"""One clear line naming the key, file or class, for the inputs a new user gets wrong (issue 11)."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from test_own_data import cli


def test_list_models_includes_timm_names(capsys):
    assert cli("list", "models", "--pattern", "resnet1*") == 0
    names = capsys.readouterr().out.split("\n")
    assert "resnet18  (timm)" in names


def test_gfn_names_classes_without_training_images():
    from robustune.data.digits import TensorImageDataset
    from robustune.gfn.similarity import class_embeddings
    from robustune.models import create_classifier

    ds = TensorImageDataset(torch.rand(4, 3, 32, 32), [0, 1, 0, 1], ["ant", "bee", "cat"])
    with pytest.raises(ValueError, match=r"no training images for class\(es\) 'cat' \(2\)"):
        class_embeddings(create_classifier("small_cnn", 3, width=4), ds, 3)


def test_offline_hub_fails_fast_with_one_message(monkeypatch, tmp_path, caplog):
    from huggingface_hub import constants

    from robustune.models import WeightsUnavailableError, create_classifier

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as on a user's machine
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: offline
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING), pytest.raises(WeightsUnavailableError, match="hub is offline"):
        create_classifier("resnet10t", num_classes=3, weights="hub")
    assert time.perf_counter() - start < 15
    assert "Retrying" not in caplog.text
    assert constants.HF_HUB_OFFLINE is False  # restored
