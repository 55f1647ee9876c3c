"""create_clip (tags, files, offline errors), templates, and the zero-shot classifier's interface."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustune.clip import CLIPClassifier, create_clip, dataset_template, resolve_templates
from robustune.runs.zeroshot import write_zeroshot_run
from robustune.errors import WeightsUnavailableError

NAMES = ["zero", "one", "two"]


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return create_clip("clip:robustune-tiny-clip")


def test_create_clip_is_frozen_with_its_data_config(bundle):
    assert not bundle.model.training
    assert not any(p.requires_grad for p in bundle.model.parameters())
    assert bundle.image_size == 32 and len(bundle.mean) == 3
    assert bundle.tokenizer(["a photo of a one."]).shape == (1, 77)


def test_unknown_architecture_and_tag_name_the_choices():
    with pytest.raises(ValueError, match="ViT-B-32"):
        create_clip("ViT-B-33")
    with pytest.raises(WeightsUnavailableError, match="openai"):
        create_clip("ViT-B-32", weights="opneai")


def test_offline_hub_tag_says_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="model.weights=") as exc:
        create_clip("ViT-B-32", weights="openai")
    assert "hf-hub:" in str(exc.value)


def test_local_weights_file_round_trip(bundle, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in bundle.model.state_dict().items()}, str(path))
    again = create_clip("robustune-tiny-clip", weights=str(path))
    for k, v in bundle.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[k], v)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        create_clip("robustune-tiny-clip", weights=str(tmp_path / "missing.safetensors"))


def test_dataset_templates_and_ensembles():
    assert dataset_template("OxfordPets") == dataset_template("oxford_pets") == "a photo of a {}, a type of pet."
    assert dataset_template("dtd") == "{} texture."
    assert dataset_template("something_else") == "a photo of a {}."
    assert len(resolve_templates("ensemble", "digits")) > 1
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        resolve_templates("a photo", "digits")


def test_zero_shot_classifier_is_a_classifier(bundle):
    model = CLIPClassifier(bundle, NAMES, resolve_templates("ensemble", "digits"))
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        logits, feats = model.logits_and_features(x)
        expected = bundle.model.logit_scale.exp() * F.normalize(feats, dim=-1) @ model.head_weights().t()
    torch.testing.assert_close(logits, expected)
    assert model.num_classes == 3 and model.input_size == (3, 32, 32)
    torch.testing.assert_close(model.head_weights().norm(dim=-1), torch.ones(3))
    model.set_classes(NAMES[:2])
    assert model(x).shape == (5, 2)


def test_zero_shot_run_folder_needs_the_zeroshot_method(tmp_path):
    from robustune.config import ConfigError, load_config

    cfg = load_config(None, ["model.name=clip:robustune-tiny-clip", "method.name=zeroshot"])
    run = write_zeroshot_run(cfg, tmp_path / "zs")
    assert (run / "config.yaml").exists() and (run / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="zeroshot"):
        write_zeroshot_run(load_config(None, ["model.name=clip:robustune-tiny-clip", "method.name=fap"]),
                           tmp_path / "x")


def test_tiny_clip_pretraining_datasets_templates_and_cache_keys(bundle):
    from robustune.clip.tiny import PRETRAIN_RECIPES, TinyCLIPRecipe, encode_text_trimmed, tiny_clip_path

    assert set(PRETRAIN_RECIPES) >= {"digits", "digits_pairs"}
    assert dataset_template("digits_pairs") == "a photo of the number {}."
    assert resolve_templates("ensemble", "digits_pairs")[0] == "a photo of the number {}."
    # the digits key predates the dataset / trim_text fields: caches made before stay valid
    assert tiny_clip_path().name == "robustune-tiny-clip-digits-bac0457df140.safetensors"
    pairs = tiny_clip_path(dataset="digits_pairs")
    assert pairs.name.startswith("robustune-tiny-clip-digits_pairs-") and pairs != tiny_clip_path(
        TinyCLIPRecipe(seed=1), dataset="digits_pairs")
    with pytest.raises(ValueError, match="tiny CLIP pre-training dataset.*digits_pairs"):
        tiny_clip_path(dataset="cifar10")
    # trimming the padding after the end token does not change the text features
    tokens = bundle.tokenizer(["a photo of the number 37.", "a handwritten 00.", "the number 9"])
    with torch.no_grad():
        torch.testing.assert_close(encode_text_trimmed(bundle.model, tokens), bundle.model.encode_text(tokens),
                                   atol=1e-5, rtol=1e-5)
