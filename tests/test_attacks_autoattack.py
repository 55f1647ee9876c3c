"""AutoAttack components and their composition on a tiny trained model.

Settings are reduced (FAST) so the file stays quick; the standard settings are checked separately
on the attack objects themselves, without running them.
"""

import json

import pytest
import torch

from robustune.attacks import APGD, APGDT, FAB, AutoAttack, Square, create_attack, lp_norm
from robustune.attacks.autoattack import STANDARD_SETTINGS
from robustune.data import create_dataset
from robustune.data.digits import TensorImageDataset
from robustune.eval.autoattack_run import autoattack_outcomes
from robustune.eval.robust import attack_outcomes

pytest.importorskip("torchattacks")

EPS = 2 / 255
FAST = {"apgd-ce": {"steps": 8}, "apgd-t": {"steps": 6, "n_target_classes": 2},
        "fab-t": {"steps": 6, "n_target_classes": 2}, "square": {"n_queries": 40}}


@pytest.fixture(scope="module")
def points():
    ds = create_dataset("digits", "test")
    return TensorImageDataset(ds.images[:32], ds.targets[:32], ds.classes)


def fast_component(name, model, eps=EPS, norm="Linf"):
    kw = {k: v for k, v in STANDARD_SETTINGS[name].items() if k != "cls"}
    return STANDARD_SETTINGS[name]["cls"](model, eps, norm=norm, **{**kw, **FAST[name]})


def test_standard_settings_are_exact(trained_tiny_model):
    aa = AutoAttack(trained_tiny_model, eps=8 / 255)
    assert aa.component_names == ["apgd-ce", "apgd-t", "fab-t", "square"]
    apgd, apgdt, fabt, square = (a for _, a in aa.components)
    ta_apgd = apgd.build(seed=0, num_classes=10)
    assert (ta_apgd.steps, ta_apgd.n_restarts, ta_apgd.loss, ta_apgd.eot_iter) == (100, 1, "ce", 1)
    ta_apgdt = apgdt.build(seed=0, num_classes=100)
    assert (ta_apgdt.steps, ta_apgdt.n_target_classes, ta_apgdt.n_restarts) == (100, 9, 1)
    ta_fab = fabt.build(seed=0, num_classes=100)
    assert ta_fab.multi_targeted and (ta_fab.steps, ta_fab.n_target_classes, ta_fab.n_restarts) == (100, 9, 1)
    ta_square = square.build(seed=0, num_classes=10)
    assert (ta_square.n_queries, ta_square.n_restarts, ta_square.p_init) == (5000, 1, 0.8)
    assert ta_square.rescale_schedule is False and ta_square.loss == "margin"  # as fra31's AutoAttack
    rand = create_attack("autoattack-rand", trained_tiny_model, eps=8 / 255)
    assert rand.component_names == ["apgd-ce", "apgd-dlr"]
    assert all(a.eot_iter == 20 and a.steps == 100 for _, a in rand.components)
    # Fewer classes than 10: targets capped at n - 1.
    assert apgdt.build(seed=0, num_classes=5).n_target_classes == 4


@pytest.mark.parametrize("name,norm,eps", [("apgd-ce", "Linf", EPS), ("apgd-ce", "L2", 0.3),
                                           ("apgd-t", "Linf", EPS), ("fab-t", "Linf", EPS),
                                           ("square", "Linf", EPS), ("square", "L2", 0.3)])
def test_component_in_ball_box_seeded_and_side_effect_free(trained_tiny_model, points, name, norm, eps):
    model = trained_tiny_model
    x, y = points.images[:16], torch.tensor(points.targets[:16])
    attack = fast_component(name, model, eps, norm)
    model.train()
    first, *_, last = model.backbone.children()
    first.eval()
    rng = torch.random.get_rng_state()
    adv = attack(x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(rng, torch.random.get_rng_state()), "global RNG must be untouched"
    assert model.training and not first.training and last.training
    model.eval()
    assert (lp_norm(adv - x, norm) <= eps + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
    again = attack(x, y, generator=torch.Generator().manual_seed(3))
    assert torch.equal(adv, again)


def test_autoattack_not_weaker_than_any_component(trained_tiny_model, points):
    model = trained_tiny_model.eval()
    aa = AutoAttack(model, eps=EPS, overrides=FAST)
    out = autoattack_outcomes(model, points, aa, batch_size=16)
    alone = {}
    for name in aa.component_names:
        _, robust = attack_outcomes(model, points, fast_component(name, model), batch_size=16)
        alone[name] = robust.float().mean().item()
    aa_acc = out.robust.float().mean().item()
    assert all(aa_acc <= acc + 1e-9 for acc in alone.values()), (aa_acc, alone)
    assert aa_acc < out.clean.float().mean().item()  # the attack bites at this ε
    # Worst case per point: robust means clean-correct and never fooled.
    assert not (out.robust & ~out.clean).any()
    assert ((out.fooled_by >= 0) == (out.clean & ~out.robust)).all()
    accs = [c["robust_accuracy"] for c in out.components]
    assert accs == sorted(accs, reverse=True)
    assert out.components[1]["attacked"] == round(accs[0] * len(points))


def test_batch_autoattack_keeps_worst_case(trained_tiny_model, points):
    model = trained_tiny_model.eval()
    x, y = points.images[:16], torch.tensor(points.targets[:16])
    adv = AutoAttack(model, eps=EPS, overrides=FAST)(x, y, generator=torch.Generator().manual_seed(0))
    first = fast_component("apgd-ce", model)(x, y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        aa_ok, first_ok = model(adv).argmax(1) == y, model(first).argmax(1) == y
    assert (lp_norm(adv - x, "Linf") <= EPS + 1e-6).all()
    assert aa_ok.sum() <= first_ok.sum()


def test_resume_after_interruption_gives_same_points(trained_tiny_model, points, tmp_path, monkeypatch):
    model = trained_tiny_model.eval()
    full = autoattack_outcomes(model, points, AutoAttack(model, eps=EPS, overrides=FAST),
                               batch_size=16, state_path=tmp_path / "full.json")

    calls = []
    original = AutoAttack.run_component

    def interrupted(self, index, x, y, generator):
        calls.append(index)
        if index == 2:
            raise KeyboardInterrupt  # the job is killed during FAB-T
        return original(self, index, x, y, generator)

    state = tmp_path / "state.json"
    monkeypatch.setattr(AutoAttack, "run_component", interrupted)
    with pytest.raises(KeyboardInterrupt):
        autoattack_outcomes(model, points, AutoAttack(model, eps=EPS, overrides=FAST),
                            batch_size=16, state_path=state)
    assert json.loads(state.read_text())["done"] == ["apgd-ce", "apgd-t"]

    def counting(self, index, x, y, generator):
        calls.append(("resumed", index))
        return original(self, index, x, y, generator)

    monkeypatch.setattr(AutoAttack, "run_component", counting)
    resumed = autoattack_outcomes(model, points, AutoAttack(model, eps=EPS, overrides=FAST),
                                  batch_size=16, state_path=state)
    resumed_calls = {i for _, i in (c for c in calls if isinstance(c, tuple))}
    assert resumed_calls <= {2, 3}  # APGD-CE and APGD-T were not run again
    if full.components[1]["robust_accuracy"] > 0:
        assert 2 in resumed_calls
    assert torch.equal(resumed.robust, full.robust)
    assert torch.equal(resumed.fooled_by, full.fooled_by)

    with pytest.raises(ValueError, match="different AutoAttack run"):
        autoattack_outcomes(model, points, AutoAttack(model, eps=4 / 255, overrides=FAST),
                            batch_size=16, state_path=state)


def test_registry_builds_every_component(trained_tiny_model):
    for name, cls in [("apgd-ce", APGD), ("apgd-t", APGDT), ("fab-t", FAB), ("square", Square)]:
        assert isinstance(create_attack(name, trained_tiny_model, eps=EPS), cls)
    with pytest.raises(ValueError, match="APGD loss"):
        APGD(trained_tiny_model, eps=EPS, loss="kl")
