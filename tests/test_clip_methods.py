"""Prompt-tuning methods: FAP's loss by hand, one step of every method, prompt-only checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from robustune.clip import CLIPClassifier, create_clip
from robustune.losses.fap import fap_loss, fap_sample_terms
from robustune.data.digits import DIGIT_NAMES
from robustune.files import save_tensors
from robustune.methods import StepContext, create_method
from robustune.errors import WeightsUnavailableError

TINY = dict(n_ctx=2, depth=2)
PARAMS = {
    "coop": dict(n_ctx=4, ctx_init="random"),
    "apt": dict(n_ctx=4, ctx_init="a photo of a", eps=4 / 255, alpha=2 / 255, steps=2),
    "adv_vp": dict(eps=4 / 255),  # pad_size: 30/224 of 32 px = 4
    "adv_vlp": dict(depth=2, eps=4 / 255),  # depth sets depth_text and depth_vision
    "adv_maple": dict(TINY, eps=4 / 255),
    "fap": dict(TINY, eps=4 / 255),
}


def test_fap_loss_matches_a_hand_computation():
    lc = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    la = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    fc = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    fa = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    y = torch.tensor([0, 2])

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    ce = kl = 0.0
    cos = [1 / math.sqrt(2), -1.0]
    for i in range(2):
        p, q = softmax(lc[i].tolist()), softmax(la[i].tolist())
        ce += -math.log(p[y[i]]) / 2
        kl_i = sum(pj * math.log(pj / qj) for pj, qj in zip(p, q))  # KL(p(x) ‖ p(x+δ))
        kl += kl_i * (1 + cos[i]) / 2
    out = fap_loss(lc, la, fc, fa, y, lam=1.5)
    assert out.natural.item() == pytest.approx(ce, rel=1e-5)
    assert out.adversarial.item() == pytest.approx(kl, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce + 1.5 * kl, rel=1e-5)
    # The direction matters: swapping clean and adversarial gives KL(p(x+δ) ‖ p(x)), a different value.
    swapped = fap_sample_terms(la, lc, fa, fc).mean().item()
    assert abs(swapped - kl) > 1e-3


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return CLIPClassifier(create_clip("robustune-tiny-clip"), DIGIT_NAMES, ["a photo of the digit {}."])


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_one_step_trains_prompts_only(base, name, tmp_path):
    method = create_method(name, base, PARAMS[name])
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    ctx = StepContext(epoch=0, step=0, generator=torch.Generator().manual_seed(0))
    method.train()
    out = method.training_step(x, y, ctx)
    assert torch.isfinite(out["loss"]) and out["logits"].shape == (4, 10)
    out["loss"].backward()
    trainable = list(method.trainable_parameters())
    assert {id(p) for p in trainable} == {id(p) for p in method.model.learner.parameters()}
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert all(p.grad is None for p in base.clip.parameters())
    # Checkpoints and exports hold the prompts only, and round-trip.
    state = method.export_state()
    assert set(state) == set(dict(method.model.learner.named_parameters()))
    assert sum(v.numel() for v in state.values()) < 20_000
    save_tensors(tmp_path / "model.safetensors", state)
    again = create_method(name, base, PARAMS[name])
    again.load_export(tmp_path / "model.safetensors")
    for k, v in again.export_state().items():
        torch.testing.assert_close(v, state[k])
    method.zero_grad(set_to_none=True)


def test_load_export_of_another_method_is_a_clear_error(base, tmp_path):
    save_tensors(tmp_path / "coop.safetensors", create_method("coop", base, PARAMS["coop"]).export_state())
    with pytest.raises(WeightsUnavailableError, match="prompts of this method"):
        create_method("fap", base, PARAMS["fap"]).load_export(tmp_path / "coop.safetensors")


def test_prompt_methods_need_a_clip_model():
    from robustune.models import create_classifier

    with pytest.raises(TypeError, match="clip:"):
        create_method("fap", create_classifier("small_cnn", 10), {})



def test_pad_size_scales_with_the_input_size(base):
    assert create_method("adv_vp", base, {}).model.learner.pad_size == 4

def test_fap_attack_is_kl_and_adv_methods_use_ce(base):
    assert create_method("fap", base, PARAMS["fap"]).attack.loss_fn.__name__ == "kl_loss"
    assert create_method("adv_maple", base, PARAMS["adv_maple"]).attack.loss_fn.__name__ == "ce_loss"
    assert not hasattr(create_method("coop", base, PARAMS["coop"]), "attack")
