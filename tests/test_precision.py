"""The precision policy (robustune.precision): bf16 parity of robust accuracy on CPU, the fp16 guard."""

from __future__ import annotations

import math

import pytest
import torch

from robustune.attacks import create_attack
from robustune.precision import (PrecisionError, check_inner_attack_precision, correct_rechecked,
                                 resolve_precision)


def test_auto_is_fp32_without_a_gpu_and_unknown_names_fail():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(PrecisionError, match="valid: fp32, bf16, fp16, auto"):
        resolve_precision("half", "cpu")


def test_bf16_robust_accuracy_matches_fp32_on_the_same_points(trained_tiny_model, digits_splits):
    """CPU bf16 autocast: same attack (fp32 gradient steps, same seeds) → the same adversarial
    points; a point counts under the policy only if bf16 and the fp32 re-check agree, so the policy's
    robust set is a subset of fp32's, and the two accuracies agree within the binomial noise."""
    from robustune.eval.clean import predict
    from robustune.eval.robust import attack_outcomes

    model, test = trained_tiny_model, digits_splits.test
    attack = create_attack("pgd", model, eps=4 / 255, steps=5, alpha=2.5 * (4 / 255) / 5, seed=0)
    clean32, rob32 = attack_outcomes(model, test, attack, 128, "cpu", seed=0, precision="fp32")
    clean16, rob16 = attack_outcomes(model, test, attack, 128, "cpu", seed=0, precision="bf16")
    n = len(test)
    p32, p16 = rob32.float().mean().item(), rob16.float().mean().item()
    assert 0.2 < p32 < 0.95, f"the parity check needs a robust accuracy away from 0 and 1, got {p32}"
    assert not bool((rob16 & ~rob32).any()), "a point robust under bf16 but not in fp32"
    assert not bool((clean16 & ~clean32).any())
    noise = 2 * math.sqrt(p32 * (1 - p32) / n)  # 95 % binomial half-width on the same n points
    assert abs(p16 - p32) <= noise, (p16, p32, noise)
    pred32, y = predict(model, test, 128, "cpu", precision="fp32")
    pred16, _ = predict(model, test, 128, "cpu", precision="bf16")
    a32, a16 = (pred32 == y).float().mean().item(), (pred16 == y).float().mean().item()
    assert abs(a16 - a32) <= 2 * math.sqrt(a32 * (1 - a32) / n) + 1 / n


def test_recheck_drops_points_that_only_the_reduced_forward_gets_right():
    class Flip(torch.nn.Module):  # right under autocast (bf16 input), wrong in fp32
        def forward(self, x):
            right = (x.dtype == torch.bfloat16) or torch.is_autocast_enabled("cpu")
            logits = torch.zeros(len(x), 2)
            logits[:, 0 if right else 1] = 1
            return logits

    x, y = torch.rand(4, 3), torch.zeros(4, dtype=torch.long)
    assert correct_rechecked(Flip(), x, y, "fp32").sum() == 0
    assert correct_rechecked(Flip(), x, y, "bf16").sum() == 0  # bf16 says right, the fp32 re-check says no


@pytest.mark.parametrize("method,refused", [("pgd_at", True), ("gfn", True), ("trades", True),
                                            ("fap", True), ("erapt", True), ("gfn_det", True),
                                            ("erm", False), ("coop", False)])
def test_fp16_is_refused_for_methods_with_an_inner_attack(method, refused):
    from robustune.methods import METHODS

    cls = METHODS.get(method)
    if refused:
        with pytest.raises(PrecisionError, match="bf16"):
            check_inner_attack_precision("fp16", method, cls.has_inner_attack)
    else:
        check_inner_attack_precision("fp16", method, cls.has_inner_attack)
    check_inner_attack_precision("bf16", method, cls.has_inner_attack)


def test_train_refuses_fp16_pgd_at_before_writing_anything(tmp_path):
    from robustune.config import load_config
    from robustune.engine import train

    cfg = load_config(None, ["model.name=small_cnn", "method.name=pgd_at", "train.precision=fp16",
                             "train.epochs=1", "train.max_steps=1"])
    with pytest.raises(PrecisionError, match="train.precision=bf16"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_bf16_training_step_runs_on_cpu(tmp_path):
    from robustune.config import load_config
    from robustune.engine import train

    cfg = load_config(None, ["model.name=small_cnn", "method.name=pgd_at", "train.precision=bf16",
                             "train.epochs=1", "train.max_steps=2", "train.eval_every=0"])
    result = train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "model.safetensors").exists() and result.epochs_run == 1
