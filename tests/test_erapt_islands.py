"""The multi-start islands of ER-APT's region (issue 20): invariants of the region trained on."""

import math

import pytest
import torch

from robustune.analysis.coverage import mean_pairwise_distance
from robustune.attacks.evolution import EvolutionRegion
from robustune.attacks.islands import merge_islands
from robustune.models import create_classifier

EPS = 8 / 255
DEFAULT = {"population": 4, "generations": 1, "order": "crossover_first", "crossover": "blend",
           "mutation": "gradient", "init": "mutation", "p_mut": 1.0, "mut_sigma": 0.5, "region": 1, "starts": 2}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_classifier("small_cnn", num_classes=10, width=8).eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 16, 16, generator=g)
    x[0] = 0.0  # a black image: the [0,1] clip binds on one side everywhere
    return x, torch.randint(0, 10, (4,), generator=g)


def search(model, batch, seed=1, **kw):
    attack = EvolutionRegion(model, eps=EPS, pgd_alpha=4 / 255, **{**DEFAULT, **kw})
    return attack, attack.region_population(*batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kw", [{}, {"starts": 3}, {"starts": 2, "region": 2}, {"crossover": "uniform"}])
def test_region_members_in_ball_pixels_and_sized(model, batch, kw):
    attack, res = search(model, batch, **kw)
    s, r = attack.starts, attack.island_region
    assert attack.region_size == s * r and res.region.shape == (4, s * r, 3, 16, 16)
    assert res.population.shape == (4, s * 4, 3, 16, 16) and res.fitness.shape == (4, s * 4)
    assert res.delta.abs().amax() <= EPS + 1e-6
    assert res.population.min() >= 0 and res.population.max() <= 1
    fit = res.fitness.gather(1, res.region_index)
    assert (fit[:, :-1] >= fit[:, 1:]).all() and torch.equal(fit[:, 0], res.fitness.amax(1))
    # r members from every island (indices s·P .. s·P + P − 1)
    islands = (res.region_index // 4).sort(1).values
    assert torch.equal(islands, torch.arange(s).repeat_interleave(r).expand(4, -1))


def test_same_seed_same_region_other_seed_other_region(model, batch):
    _, a = search(model, batch, seed=5)
    _, b = search(model, batch, seed=5)
    assert torch.equal(a.population, b.population) and torch.equal(a.region_index, b.region_index)
    _, c = search(model, batch, seed=6)
    assert not torch.equal(a.population, c.population)


def test_region_is_diverse_and_each_island_beats_its_start(model, batch):
    attack, res = search(model, batch)
    x = batch[0]
    spread = mean_pairwise_distance(res.region - x.unsqueeze(1)) / (EPS * math.sqrt(x[0].numel()))
    assert (spread[1:] > 0.1).all()  # the members are distinct points of the ball, not one point twice
    # island 0 starts from δ_pgd: its best is at least δ_pgd's fitness; the region mean is ≥ the island starts'
    island_best = res.fitness.view(4, 2, 4).amax(2)
    assert (island_best[:, 0] >= res.pgd_fitness).all()
    assert (res.best_fitness[-1] >= res.pgd_fitness).all()


def test_one_start_is_the_single_population_search(model, batch):
    """starts = 1 is issue 13's search exactly (the ``point`` option of the method)."""
    x, y = batch
    one = EvolutionRegion(model, eps=EPS, pgd_alpha=4 / 255, **{**DEFAULT, "starts": 1})
    res = one.region_population(x, y, generator=torch.Generator().manual_seed(1))
    start = one.pgd(x, y, generator=torch.Generator().manual_seed(1))
    ref = one.evolve(x, y, start, torch.Generator().manual_seed(1), one.pgd.last_direction)
    assert res.region.shape[1] == 1 and one.forwards_per_image() == 6
    assert torch.equal(res.fitness.amax(1), res.fitness.gather(1, res.region_index)[:, 0])
    assert ref.population.shape == res.population.shape


def test_forwards_count_the_extra_pgd_starts(model):
    attack = EvolutionRegion(model, eps=EPS, pgd_steps=2, **DEFAULT)
    assert attack.forwards_per_image() == 2 * 6 + 3 * 2  # two islands' searches + one extra PGD-2


def test_merge_islands_offsets_and_sorts():
    from robustune.attacks.evolution import RegionPopulation

    fit = torch.tensor([[1.0, 0.0], [5.0, 2.0]])  # one image, two islands of P = 2, rows b·S + s
    pop = torch.arange(4.0).view(2, 2, 1, 1, 1)
    res = RegionPopulation(torch.zeros(2, 1, 1, 1), pop, fit, torch.tensor([[0], [0]]), torch.tensor([1.0, 5.0]),
                           torch.tensor([[1.0, 5.0]]))
    merged = merge_islands(res, batch=1, islands=2)
    assert merged.region_index.tolist() == [[2, 0]]  # island 1's best (fitness 5) first
    assert merged.pgd_fitness.tolist() == [1.0] and merged.best_fitness.tolist() == [[5.0]]


def test_bad_starts_rejected(model):
    with pytest.raises(ValueError, match="starts"):
        EvolutionRegion(model, eps=EPS, starts=0)
