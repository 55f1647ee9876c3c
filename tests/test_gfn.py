import logging

import pytest
import torch
import torch.nn.functional as F

from robustune.data import create_dataset
from robustune.gfn import (
    ClassSimilarity,
    NeighborPerturbation,
    clamp_k,
    class_similarity,
    neighbor_ranks,
    neighbor_table,
    sample_neighbor_targets,
)
from robustune.losses import GFN_LOSSES


@pytest.fixture(scope="module")
def batch():
    ds = create_dataset("digits", "test")
    return ds.images[:96], torch.tensor(ds.targets[:96])


@pytest.fixture(scope="module")
def ranks(trained_tiny_model):
    sim = class_similarity(trained_tiny_model, create_dataset("digits", "train"), 10, max_per_class=20)
    return neighbor_ranks(sim)


def test_neighbor_ranks_on_a_hand_made_matrix():
    sim = torch.tensor([[1.0, 0.2, 0.9, 0.5], [0.2, 1.0, 0.1, 0.7], [0.9, 0.1, 1.0, 0.3],
                        [0.5, 0.7, 0.3, 1.0]])
    r = neighbor_ranks(sim)
    assert r[0].tolist() == [0, 3, 1, 2]  # class 0: nearest is 2, then 3, then 1
    assert r[1].tolist() == [2, 0, 3, 1]
    assert neighbor_table(r, 2)[0].tolist() == [2, 3]
    assert torch.equal(r.diagonal(), torch.zeros(4, dtype=torch.long))


def test_clamp_k_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert clamp_k(20, 10) == 9
    assert "k = 20" in caplog.text
    assert clamp_k(3, 10) == 3


def test_similarity_sources_and_saving(trained_tiny_model, tmp_path):
    ds = create_dataset("digits", "train")
    feat = class_similarity(trained_tiny_model, ds, 10, max_per_class=10)
    head = class_similarity(trained_tiny_model, source="head_weights")
    for m in (feat, head):
        assert m.shape == (10, 10) and torch.allclose(m.diagonal(), torch.ones(10), atol=1e-5)
        assert torch.allclose(m, m.T, atol=1e-6)
    saved = ClassSimilarity.from_matrix(feat, ds.classes)
    saved.save(tmp_path)
    back = ClassSimilarity.load(tmp_path)
    assert torch.equal(back.ranks, saved.ranks) and back.classes == ds.classes


def test_targets_are_never_the_true_class_and_always_in_top_k(ranks):
    labels = torch.arange(10).repeat(50)
    for k in (1, 3, 9):
        t = sample_neighbor_targets(labels, neighbor_table(ranks, k), torch.Generator().manual_seed(0))
        r = ranks[labels, t]
        assert (t != labels).all() and (r >= 1).all() and (r <= k).all()
        if k > 1:  # uniform over N_k: every rank is drawn
            assert set(r.tolist()) == set(range(1, k + 1))


def test_targeted_step_raises_target_probability_and_stays_in_bounds(trained_tiny_model, batch, ranks):
    x, y = batch
    model = trained_tiny_model
    model.zero_grad(set_to_none=True)
    pert = NeighborPerturbation(model, eta=0.05)
    adv, targets = pert(x, y, neighbor_table(ranks, 3), torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_clean = model(x).softmax(1).gather(1, targets[:, None]).mean()
        p_adv = model(adv).softmax(1).gather(1, targets[:, None]).mean()
    assert p_adv > p_clean
    step = 0.05 * model.std.view(1, 3, 1, 1)
    assert ((adv - x).abs() <= step + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())


def _loss(name, logits, labels, targets, ranks, **kw):
    return GFN_LOSSES.get(name)(logits, labels, targets, ranks, **kw).item()


def test_loss_readings_depend_on_alpha_and_k_and_reduce_to_ce(ranks):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 10, generator=g)
    labels = torch.randint(0, 10, (64,), generator=g)
    targets = sample_neighbor_targets(labels, neighbor_table(ranks, 5), g)
    ce = F.cross_entropy(logits, labels).item()
    for name in ("rank_weighted", "neighbor_suppression", "neighbor_margin", "neighbor_additive"):
        base = _loss(name, logits, labels, targets, ranks, alpha=0.5, k=5)
        assert base != pytest.approx(_loss(name, logits, labels, targets, ranks, alpha=0.2, k=5)), name
        # k matters: with k = 9 the normaliser / the neighbour set changes
        assert base != pytest.approx(_loss(name, logits, labels, targets, ranks, alpha=0.5, k=9)), name
    assert _loss("ce", logits, labels, targets, ranks, alpha=0.1, k=2) == pytest.approx(ce)
    assert _loss("rank_weighted", logits, labels, targets, ranks, alpha=1.0, k=5) == pytest.approx(ce)
    assert _loss("neighbor_suppression", logits, labels, targets, ranks, lam=0.0) == pytest.approx(ce)
    assert _loss("neighbor_margin", logits, labels, targets, ranks, beta=0.0) == pytest.approx(ce)
    assert _loss("neighbor_additive", logits, labels, targets, ranks, margin=0.0) == pytest.approx(ce)
    assert _loss("predicted_rank", logits, labels, targets, ranks, beta=0.0) == pytest.approx(ce)
    assert _loss("neighbor_margin", logits, labels, targets, ranks) > ce  # never a weight < 1
    assert _loss("neighbor_suppression", logits, labels, targets, ranks) > ce


def test_rank_weighted_weights_average_one_over_neighbours(ranks):
    k, alpha = 4, 0.5
    labels = torch.zeros(k, dtype=torch.long)
    targets = neighbor_table(ranks, k)[0]  # each neighbour once
    logits = torch.zeros(k, 10)  # CE = ln 10 for every sample
    loss = _loss("rank_weighted", logits, labels, targets, ranks, alpha=alpha, k=k)
    assert loss == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-5)


def test_methods_registered_and_gfn_step_runs(trained_tiny_model, batch):
    import copy

    from robustune.methods import SetupContext, StepContext, create_method, list_methods

    assert {"gfn", "nbr", "adv_untargeted", "trades", "erm", "pgd_at"} <= set(list_methods())
    x, y = batch
    model = copy.deepcopy(trained_tiny_model)
    m = create_method("gfn", model, {"k": 3, "loss": "neighbor_margin"})
    m.setup(SetupContext(create_dataset("digits", "train"), torch.device("cpu"), 0))
    assert m.ranks.diagonal().sum() == 0 and m.ranks.max() == 9
    out = m.training_step(x, y, StepContext(0, 0, torch.Generator().manual_seed(0)))
    assert out["loss"].requires_grad and 1 <= out["logs"]["target_rank"] <= 3
    assert create_method("nbr", model, {"k": 3}).loss_name == "ce"


def test_sign_noise_and_alpha_rank_targets(trained_tiny_model, batch):
    import copy

    from robustune.methods import SetupContext, StepContext, create_method

    x, y = batch
    model = copy.deepcopy(trained_tiny_model)
    noise = create_method("sign_noise", model, {"eta": 0.02})
    seen = {}
    real_forward = model.forward
    model.forward = lambda t: seen.setdefault("x", t) is not None and real_forward(t)
    out = noise.training_step(x, y, StepContext(0, 0, torch.Generator().manual_seed(0)))
    model.forward = real_forward
    delta = seen["x"] - x
    step = (0.02 * model.std).reshape(1, -1, 1, 1).expand_as(x)
    inside = (x > step) & (x < 1 - step)  # unclipped pixels move by exactly ±step, both signs seen
    assert torch.allclose(delta.abs()[inside], step[inside], atol=1e-6)
    assert (delta[inside] > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert out["loss"].requires_grad
    nbr = create_method("nbr", model, {"k": 3, "target_sampling": "alpha_rank", "alpha": 0.5})
    nbr.setup(SetupContext(create_dataset("digits", "train"), torch.device("cpu"), 0))
    ranks = [nbr.training_step(x, y, StepContext(0, s, torch.Generator().manual_seed(s)))["logs"]["target_rank"]
             for s in range(5)]
    assert sum(ranks) / 5 < 2.0 - 0.2  # uniform over ranks 1..3 has mean 2; ∝ 0.5^r has mean 11/7
    with pytest.raises(ValueError, match="target_sampling"):
        create_method("nbr", model, {"target_sampling": "far"})
