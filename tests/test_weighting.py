"""Dynamic loss weighting on synthetic loss curves, and the collapse detector."""

import logging
import math

import pytest
import torch

from robustune.losses.weighting import LossWeighting, WeightingParams

C = 10


def drive(scheme, nat, adv, **kw):
    w = LossWeighting(WeightingParams(scheme=scheme, **kw), num_classes=C)
    out = torch.stack([w.step(n, a) for n, a in zip(nat, adv)])
    return w, out


def test_fixed_is_fap():
    _, out = drive("fixed", [1.0] * 5, [0.1] * 5, collapse_detection=False)
    assert torch.allclose(out, torch.tensor([1.0, 1.5]).expand(5, 2))


def test_dwa_moves_weight_to_the_slower_term():
    steps = 60
    nat = [1.0] * steps  # natural loss stalls
    adv = [2.0 * 0.97 ** t for t in range(steps)]  # adversarial loss falls
    _, out = drive("dwa", nat, adv, window=10, collapse_detection=False)
    assert torch.allclose(out[:19], torch.tensor([1.0, 1.5]).expand(19, 2))  # < 2 windows: base weights
    assert (out[-1, 0] > 1.0) and (out[-1, 1] < 1.5)
    # the documented formula on the last two windows
    means = lambda k: torch.tensor(adv[k * 10:(k + 1) * 10]).mean()  # noqa: E731
    r = torch.tensor([1.0, means(5) / means(4)])
    expect = torch.tensor([1.0, 1.5]) * 2 * torch.softmax(r / WeightingParams().temperature, 0)
    torch.testing.assert_close(out[-1], expect.float())
    # the mirrored curve moves the other way
    _, out2 = drive("dwa", adv, nat, window=10, collapse_detection=False)
    assert out2[-1, 0] < 1.0 and out2[-1, 1] > 1.5


def test_default_dwa_weights_respond_to_a_loss_trend():
    """Issue 20: at the default T, a 20 % opposite change of the two window means moves the weights by
    more than a third of their base values (T = 2 moved (1, 1.5) only to (0.90, 1.65))."""
    nat = [1.0] * 10 + [1.2] * 10 + [1.2]  # natural loss rises 20 %, adversarial falls 20 %
    adv = [1.0] * 10 + [0.8] * 10 + [0.8]
    _, out = drive("dwa", nat, adv, window=10, collapse_detection=False)
    assert out[-1, 0] > 1.35 and out[-1, 1] < 1.0  # weight moves to the natural term
    _, old = drive("dwa", nat, adv, window=10, temperature=2.0, collapse_detection=False)
    torch.testing.assert_close(old[-1], torch.tensor([1.0, 1.5]) * 2 * torch.softmax(torch.tensor([1.2, 0.8]) / 2, 0))
    assert old[-1, 0] < 1.11  # the old temperature: a 10 % move
    _, back = drive("dwa", adv, nat, window=10, collapse_detection=False)  # mirrored: toward the adversarial term
    assert back[-1, 1] > 2.0 and back[-1, 0] < 0.7


def test_ratio_tracks_clipped_loss_ratio():
    _, up = drive("ratio", [2.0] * 100, [0.5] * 100, collapse_detection=False)  # ratio 4 → λ ↑
    assert up[-1, 1] > 3.9 and (up[1:, 1] >= up[:-1, 1]).all() and (up[:, 0] == 1).all()
    _, down = drive("ratio", [0.2] * 100, [1.0] * 100, collapse_detection=False)  # ratio 0.2 → λ_min
    assert down[-1, 1] < 0.55 and (down[1:, 1] <= down[:-1, 1]).all()
    _, capped = drive("ratio", [5.0] * 200, [1e-6] * 200, collapse_detection=False)
    assert capped[-1, 1] <= 4.0 + 1e-6


def collapsed_run(steps=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = 0.02 * torch.randn(steps, generator=g)
    # CE rises from 1.2 to ln C in 10 steps, then sits at ln C (uniform predictions), adv KL ≈ 0
    nat = [1.2 + min(t, 10) * (math.log(C) - 1.2) / 10 + float(noise[t]) * (t >= 10) for t in range(steps)]
    adv = [1e-4] * steps
    return nat, adv


def healthy_run(steps=60):
    return [2.0 * 0.97 ** t + 0.3 for t in range(steps)], [0.3] * steps


@pytest.mark.parametrize("scheme", ["fixed", "dwa", "ratio"])
def test_collapse_detector_fires_on_collapse_and_moves_weight(scheme, caplog):
    nat, adv = collapsed_run()
    with caplog.at_level(logging.WARNING, logger="robustune.losses.weighting"):
        w, out = drive(scheme, nat, adv, collapse_window=10, window=10)
    assert int(w.collapses) >= 1 and "collapse" in caplog.text
    share = out[:, 1] / out.sum(1)
    assert share[-1] < share[5]  # the adversarial share of the weight fell
    assert torch.allclose(out.sum(1)[-1], w.base_weights().sum().float())  # total unchanged


@pytest.mark.parametrize("scheme", ["fixed", "dwa", "ratio"])
def test_collapse_detector_quiet_on_healthy_run(scheme, caplog):
    nat, adv = healthy_run()
    with caplog.at_level(logging.WARNING, logger="robustune.losses.weighting"):
        w, _ = drive(scheme, nat, adv, collapse_window=10, window=10)
    assert int(w.collapses) == 0 and "collapse" not in caplog.text


def test_collapse_cooldown_and_switch_off():
    nat, adv = collapsed_run(steps=40)
    w, _ = drive("fixed", nat, adv, collapse_window=10)
    assert 1 <= int(w.collapses) <= 3  # at most one firing per window
    off, out = drive("fixed", nat, adv, collapse_window=10, collapse_detection=False)
    assert int(off.collapses) == 0 and torch.allclose(out[-1], torch.tensor([1.0, 1.5]))


def test_state_dict_roundtrip_resumes_exactly():
    nat = [1.0 + 0.1 * math.sin(t) for t in range(50)]
    adv = [0.5 * 0.98 ** t for t in range(50)]
    for scheme in ("dwa", "ratio"):
        full, out_full = drive(scheme, nat, adv, window=7)
        half, _ = drive(scheme, nat[:25], adv[:25], window=7)
        resumed = LossWeighting(WeightingParams(scheme=scheme, window=7), num_classes=C)
        resumed.load_state_dict(half.state_dict())
        out = torch.stack([resumed.step(n, a) for n, a in zip(nat[25:], adv[25:])])
        assert torch.equal(out, out_full[25:])


def test_unknown_scheme():
    with pytest.raises(ValueError, match="dwa"):
        LossWeighting(WeightingParams(scheme="softmax"))
