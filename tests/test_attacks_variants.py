"""PGD variants (losses, targeted, L2, restarts) and the attacks on a CLIP classifier unchanged."""

import pytest
import torch

from robustune.attacks import PGD, AutoAttack, create_attack, lp_norm
from robustune.data import create_dataset


@pytest.fixture(scope="module")
def batch():
    ds = create_dataset("digits", "test")
    return ds.images[:32], torch.tensor(ds.targets[:32])


def _pred(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("loss", ["ce", "cw", "dlr", "kl"])
def test_pgd_losses_stay_in_ball_and_do_not_help_the_model(trained_tiny_model, batch, loss):
    model = trained_tiny_model.eval()
    x, y = batch
    adv = PGD(model, eps=4 / 255, steps=5, loss=loss)(x, y)
    assert (lp_norm(adv - x, "Linf") <= 4 / 255 + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    assert (_pred(model, adv) == y).sum() <= (_pred(model, x) == y).sum()


def test_targeted_pgd_reaches_targets(trained_tiny_model, batch):
    model = trained_tiny_model.eval()
    x, y = batch
    target = (_pred(model, x) + 1) % 10
    adv = PGD(model, eps=16 / 255, steps=10, targeted=True)(x, target)
    assert (_pred(model, adv) == target).float().mean() > (_pred(model, x) == target).float().mean()
    assert (lp_norm(adv - x, "Linf") <= 16 / 255 + 1e-6).all()


def test_l2_pgd_and_restarts(trained_tiny_model, batch):
    model = trained_tiny_model.eval()
    x, y = batch
    one = PGD(model, eps=0.5, norm="L2", steps=5, restarts=1)(x, y, generator=torch.Generator().manual_seed(0))
    three = PGD(model, eps=0.5, norm="L2", steps=5, restarts=3)(x, y, generator=torch.Generator().manual_seed(0))
    assert (lp_norm(three - x, "L2") <= 0.5 + 1e-5).all()
    # Restarts keep the first run's success and can only add to it (same first draw).
    fooled_one, fooled_three = _pred(model, one) != y, _pred(model, three) != y
    assert not (fooled_one & ~fooled_three).any()


def test_attacks_run_unchanged_on_a_clip_classifier():
    from robustune.clip import CLIPClassifier, create_clip
    from robustune.data.digits import DIGIT_NAMES

    torch.manual_seed(0)
    model = CLIPClassifier(create_clip("robustune-tiny-clip"), DIGIT_NAMES, ["a photo of the digit {}."]).eval()
    ds = create_dataset("digits", "test")
    size = model.input_size[-1] if hasattr(model, "input_size") else 32
    x = torch.nn.functional.interpolate(ds.images[:6], size=(size, size), mode="bilinear")
    y = _pred(model, x)  # labels = zero-shot predictions, so every point starts correct
    fast = {"apgd-ce": {"steps": 3}, "apgd-t": {"steps": 3, "n_target_classes": 2},
            "fab-t": {"steps": 3, "n_target_classes": 2}, "square": {"n_queries": 10}}
    for attack in (create_attack("pgd", model, eps=1 / 255, steps=3),
                   AutoAttack(model, eps=1 / 255, overrides=fast)):
        adv = attack(x, y, generator=torch.Generator().manual_seed(0))
        assert (lp_norm(adv - x, "Linf") <= 1 / 255 + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
