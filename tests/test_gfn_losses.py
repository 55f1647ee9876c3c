"""The per-class GFN loss readings (Eqs. 7–8, issue 20): near-class probability costs more."""

import pytest
import torch
import torch.nn.functional as F

from robustune.gfn import neighbor_ranks, neighbor_table
from robustune.gfn.perturbation import rank_target_probs, sample_neighbor_targets
from robustune.losses import GFN_LOSSES
from robustune.losses.gfn import rank_weight_second_moment
from robustune.methods.gfn import GFNParams

C = 12


@pytest.fixture(scope="module")
def ranks():
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(C, 6, generator=g), dim=1)
    return neighbor_ranks(f @ f.T)


def _loss(name, logits, labels, ranks, **kw):
    targets = neighbor_table(ranks, kw.get("k", 5))[labels, 0]
    return GFN_LOSSES.get(name)(logits, labels, targets, ranks, **kw).item()


def _raised(ranks, label, rank, by):
    """Logits of one confident sample of class ``label`` with the class of ``rank`` raised by ``by``."""
    logits = torch.zeros(1, C)
    logits[0, label] = 4.0
    logits[0, int((ranks[label] == rank).nonzero())] += by
    return logits


@pytest.mark.parametrize("by", [0.5, 2.0])
def test_default_loss_costs_more_on_the_nearest_class_than_on_a_far_one(ranks, by):
    p = GFNParams()
    assert p.loss != "rank_weighted"
    kw = dict(alpha=p.alpha, k=5, beta=p.beta, lam=p.lam, margin=p.margin)
    labels = torch.tensor([3])
    base = _loss(p.loss, _raised(ranks, 3, 1, 0.0), labels, ranks, **kw)
    near = _loss(p.loss, _raised(ranks, 3, 1, by), labels, ranks, **kw)
    far = _loss(p.loss, _raised(ranks, 3, C - 1, by), labels, ranks, **kw)
    assert near > far > base
    # and plain CE cannot tell them apart
    assert _loss("ce", _raised(ranks, 3, 1, by), labels, ranks) == pytest.approx(
        _loss("ce", _raised(ranks, 3, C - 1, by), labels, ranks))


@pytest.mark.parametrize("name,kw", [("neighbor_margin", {"beta": 10.0}), ("neighbor_additive", {"margin": 1.0}),
                                     ("neighbor_suppression", {"lam": 1.0})])
def test_per_class_readings_penalise_near_classes_more(ranks, name, kw):
    labels = torch.tensor([5])
    near = _loss(name, _raised(ranks, 5, 1, 1.0), labels, ranks, alpha=0.5, k=5, **kw)
    mid = _loss(name, _raised(ranks, 5, 3, 1.0), labels, ranks, alpha=0.5, k=5, **kw)
    far = _loss(name, _raised(ranks, 5, 8, 1.0), labels, ranks, alpha=0.5, k=5, **kw)
    assert near > mid > far  # rank 8 is outside N_5: it costs what CE charges


def test_predicted_rank_weighs_by_the_rank_of_the_prediction(ranks):
    labels = torch.tensor([2])
    kw = dict(alpha=0.5, k=5, beta=4.0)
    ce = F.cross_entropy(_raised(ranks, 2, 1, 5.0), labels).item()
    near = _loss("predicted_rank", _raised(ranks, 2, 1, 5.0), labels, ranks, **kw)  # ŷ = rank 1
    second = _loss("predicted_rank", _raised(ranks, 2, 2, 5.0), labels, ranks, **kw)
    far = _loss("predicted_rank", _raised(ranks, 2, 9, 5.0), labels, ranks, **kw)  # outside N_5
    assert near == pytest.approx(ce * (1 + 4.0 * 0.5))
    assert second == pytest.approx(ce * (1 + 4.0 * 0.25))
    assert far == pytest.approx(ce)
    right = _raised(ranks, 2, 1, 1.0)  # ŷ = c: weight 1
    assert _loss("predicted_rank", right, labels, ranks, **kw) == pytest.approx(F.cross_entropy(right, labels).item())
    # α and k change it
    assert _loss("predicted_rank", _raised(ranks, 2, 2, 5.0), labels, ranks, alpha=0.8, k=5, beta=4.0) > second
    assert _loss("predicted_rank", _raised(ranks, 2, 2, 5.0), labels, ranks, alpha=0.5, k=1, beta=4.0) == \
        pytest.approx(ce)


def test_default_strength_moves_the_neighbour_gradient(ranks):
    """At the default β the gradient on the rank-1 logit is several times plain CE's (not ×1.5)."""
    p = GFNParams()
    logits = _raised(ranks, 0, 1, 0.0).requires_grad_(True)
    labels = torch.tensor([0])
    GFN_LOSSES.get(p.loss)(logits, labels, None, ranks, alpha=p.alpha, k=p.k, beta=p.beta,
                           margin=p.margin, lam=p.lam).backward()
    g_default = logits.grad[0, int((ranks[0] == 1).nonzero())].item()
    logits.grad = None
    F.cross_entropy(logits, labels).backward()
    g_ce = logits.grad[0, int((ranks[0] == 1).nonzero())].item()
    assert g_default > 3 * g_ce


def test_rank_weighted_effective_batch_cost():
    assert rank_weight_second_moment(0.5, 20) == pytest.approx(6.67, abs=0.02)
    assert rank_weight_second_moment(1.0, 20) == pytest.approx(1.0)
    assert rank_weight_second_moment(0.7, 10) < rank_weight_second_moment(0.5, 20)


def test_targets_drawn_proportional_to_alpha_rank(ranks):
    k, alpha = 4, 0.5
    probs = rank_target_probs(alpha, k)
    assert probs.sum().item() == pytest.approx(1.0) and probs[0] / probs[1] == pytest.approx(2.0)
    labels = torch.zeros(20000, dtype=torch.long)
    table = neighbor_table(ranks, k)
    t = sample_neighbor_targets(labels, table, torch.Generator().manual_seed(0), probs)
    share = torch.stack([(t == table[0, r]).float().mean() for r in range(k)])
    assert torch.allclose(share, probs, atol=0.015)
