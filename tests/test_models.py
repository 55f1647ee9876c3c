import pickle

import pytest
import torch

from robustune.models import WeightsUnavailableError, create_classifier, list_models


def test_tiny_models_registered_and_normaliser_inside():
    assert {"vit_tiny32", "small_cnn"} <= set(list_models())
    m = create_classifier("vit_tiny32", num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    expected = m.backbone((x - 0.5) / 0.5)
    assert torch.allclose(m(x), expected)
    assert m.features(x).shape == (2, 64) and m.head_weights().shape == (10, 64)


def test_local_safetensors_roundtrip_and_mismatch(tmp_path):
    from safetensors.torch import save_file

    m = create_classifier("small_cnn", num_classes=10)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in m.backbone.state_dict().items()}, str(path))
    m2 = create_classifier("small_cnn", num_classes=10, weights=str(path))
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(WeightsUnavailableError, match="class count"):
        create_classifier("small_cnn", num_classes=7, weights=str(path))


class _Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil()}, path)
    with pytest.raises(WeightsUnavailableError, match="weights_only"):
        create_classifier("small_cnn", num_classes=10, weights=str(path))


def test_plain_pth_state_dict_loads(tmp_path):
    m = create_classifier("small_cnn", num_classes=10)
    path = tmp_path / "ok.pth"
    torch.save({"state_dict": m.backbone.state_dict()}, path)
    m2 = create_classifier("small_cnn", num_classes=10, weights=str(path))
    assert torch.equal(m2.backbone.head.weight, m.backbone.head.weight)


def test_offline_hub_weights_give_a_clear_error():
    with pytest.raises(WeightsUnavailableError) as exc:
        create_classifier("resnet18", num_classes=10, weights="a1_in1k")
    msg = str(exc.value)
    assert "resnet18.a1_in1k" in msg and "model.weights=" in msg and "Download" in msg


def test_unknown_model_names_valid_choices():
    with pytest.raises(ValueError, match="vit_tiny32"):
        create_classifier("vit_tiny33", num_classes=10)


def test_any_timm_model_random_init_uses_its_data_config():
    m = create_classifier("resnet18", num_classes=5)
    assert m.input_size == (3, 224, 224) and m.crop_pct == pytest.approx(0.95, abs=0.1)
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 5)
