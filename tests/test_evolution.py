"""Property tests of the evolution-based region attack and the Theorem-1 diagnostics."""

import pytest
import torch

from robustune.analysis.coverage import covering_radius, mean_pairwise_distance, population_coverage
from robustune.attacks import create_attack
from robustune.attacks.evolution import EvolutionRegion, fitness_from_outputs, project_delta
from robustune.losses.region import reduce_region, region_loss
from robustune.models import create_classifier

EPS = 8 / 255


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


def run(model, batch, seed=1, **kw):
    x, y = batch
    kw = {"population": 6, "generations": 3, "pgd_alpha": 2 / 255, **kw}
    attack = EvolutionRegion(model, eps=EPS, **kw)
    return attack.region_population(x, y, generator=torch.Generator().manual_seed(seed))


OLD = {"crossover": "uniform", "mutation": "sign", "init": "noise", "p_mut": 0.1}  # the first defaults


@pytest.mark.parametrize("kw", [{}, OLD, {"crossover": "blend", "mutation": "gaussian"}, {"fitness": "ce"},
                                {**OLD, "pgd_steps": 0, "p_mut": 0.5}])
def test_every_individual_in_ball_and_valid_pixels(model, batch, kw):
    res = run(model, batch, **kw)
    x = batch[0]
    assert res.population.shape == (4, 6, 3, 16, 16) and res.fitness.shape == (4, 6)
    assert res.delta.abs().amax() <= EPS + 1e-6
    assert res.population.min() >= 0 and res.population.max() <= 1
    assert (res.region.shape, res.best.shape) == ((4, 3, 3, 16, 16), x.shape)


@pytest.mark.parametrize("kw", [{}, {**OLD, "pgd_steps": 0}, {"fitness": "ce", "crossover": "blend"}])
def test_elitism_best_never_below_pgd_start(model, batch, kw):
    res = run(model, batch, generations=4, **kw)
    assert (res.fitness.amax(1) >= res.pgd_fitness).all()
    # the best fitness is monotone over generations
    assert (res.best_fitness[1:] >= res.best_fitness[:-1]).all()
    # region = the r fittest, sorted
    reg_fit = res.fitness.gather(1, res.region_index)
    assert (reg_fit[:, :-1] >= reg_fit[:, 1:]).all()
    assert torch.equal(reg_fit[:, 0], res.fitness.amax(1))


def test_fitness_recorded_is_the_model_fitness(model, batch):
    x, y = batch
    res = run(model, batch, fitness="ce")
    logits = model(res.population.flatten(0, 1))
    ce = torch.nn.functional.cross_entropy(logits, y.repeat_interleave(6), reduction="none").view(4, 6)
    torch.testing.assert_close(ce, res.fitness, atol=1e-4, rtol=1e-4)


def test_evolution_finds_better_points_without_pgd(model, batch):
    res = run(model, batch, **{**OLD, "pgd_steps": 0, "generations": 6, "fitness": "ce"})
    assert (res.best_fitness[-1] > res.best_fitness[0]).any()


def test_same_seed_same_population_and_chunking_invariant(model, batch):
    a, b = run(model, batch, seed=5), run(model, batch, seed=5, max_batch=5)
    assert torch.equal(a.population, b.population) and torch.equal(a.region_index, b.region_index)
    c = run(model, batch, seed=6)
    assert not torch.equal(a.population, c.population)


def test_degenerate_sizes(model, batch):
    one = run(model, batch, population=1)
    assert one.population.shape[1] == 1 and one.region_index.shape == (4, 1)
    zero = run(model, batch, generations=0)
    assert zero.best_fitness.shape == (1, 4)
    assert torch.equal(zero.fitness[:, 0], zero.pgd_fitness)


def test_registered_attack_call_returns_best_within_eps(model, batch):
    x, y = batch
    attack = create_attack("evolution", model, eps=EPS, population=4, generations=1)
    adv = attack(x, y)
    assert adv.shape == x.shape and (adv - x).abs().max() <= EPS + 1e-6
    assert torch.equal(adv, attack(x, y))


def test_fap_and_neighbor_fitness(model, batch):
    x, y = batch
    feats = lambda t: model.features(t)  # noqa: E731
    res = run(model, batch, fitness="fap", features=feats, generations=1)
    assert torch.isfinite(res.fitness).all() and (res.fitness >= -1e-6).all()
    with pytest.raises(ValueError, match="features"):
        run(model, batch, fitness="fap", generations=0)
    neighbors = torch.stack([(torch.arange(10) + 1) % 10, (torch.arange(10) + 2) % 10], 1)
    res = run(model, batch, fitness="neighbor", neighbors=neighbors, generations=1)
    logp = model(res.population.flatten(0, 1)).log_softmax(1)
    yy = y.repeat_interleave(6)
    expect = fitness_from_outputs("neighbor", logp, yy, logp, neighbors=neighbors).view(4, 6)
    torch.testing.assert_close(expect, res.fitness, atol=1e-4, rtol=1e-4)


def test_bad_options_name_valid_choices(model):
    with pytest.raises(ValueError, match="valid"):
        EvolutionRegion(model, EPS, fitness="nope")
    with pytest.raises(ValueError, match="Linf"):
        EvolutionRegion(model, EPS, norm="L2")


def test_project_delta_keeps_ball_and_pixels():
    x = torch.tensor([0.0, 0.5, 1.0])
    d = project_delta(torch.tensor([-1.0, 1.0, 1.0]), x, 0.1)
    assert torch.allclose(d, torch.tensor([0.0, 0.1, 0.0]))


def test_region_loss_reductions():
    t = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    assert torch.allclose(reduce_region(t, "mean"), torch.tensor([2.0, 2.0]))
    assert torch.allclose(region_loss(t, "max"), torch.tensor(2.5))
    with pytest.raises(ValueError, match="mean"):
        reduce_region(t, "median")


def test_coverage_diagnostics_hand_values():
    delta = torch.zeros(1, 2, 4)
    delta[0, 1] = 1.0  # two points at distance 2
    assert torch.allclose(mean_pairwise_distance(delta), torch.tensor([2.0]))
    eps = 1.0
    # a population at the centre: the farthest point of the cube is a corner, at distance ≤ √d
    eta = covering_radius(torch.zeros(1, 1, 4), eps, n_points=512, generator=torch.Generator().manual_seed(0))
    assert 0.5 < eta.item() <= 2.0 + 1e-6
    # more spread populations cover better
    g = torch.Generator().manual_seed(0)
    spread = (torch.rand(1, 16, 4, generator=g) * 2 - 1)
    eta_spread = covering_radius(spread, eps, 512, torch.Generator().manual_seed(0))
    eta_center = covering_radius(torch.zeros(1, 16, 4), eps, 512, torch.Generator().manual_seed(0))
    assert eta_spread < eta_center


def test_population_coverage_logs(model, batch):
    res = run(model, batch)
    stats = population_coverage(res.delta, EPS, 64, torch.Generator().manual_seed(0), clean=batch[0])
    logs = stats.logs()
    assert 0 < logs["pop_pairwise_rel"] <= 2 and 0 < logs["pop_coverage_rel"] <= 1 + 1e-6


OPERATORS = [
    {"order": "mutate_first"},
    {"order": "mutate_first", "crossover": "blend", "mutation": "gaussian", "mut_sigma": 0.1, "p_mut": 1.0},
    {"mutation": "gradient", "crossover": "blend", "init": "mutation", "mut_sigma": 2.0, "p_mut": 1.0},
    {"order": "mutate_first", "mutation": "gradient", "init": "mutation", "p_mut": 0.5, "region": "all"},
    {"mutation": "sign", "init": "mutation", "p_mut": 0.7},
]


@pytest.mark.parametrize("kw", OPERATORS)
def test_operator_variants_keep_ball_pixels_elitism_and_seed(model, batch, kw):
    """Every variant: members in the ε-ball and [0,1]; best ≥ PGD start; same seed → same population."""
    res = run(model, batch, **kw)
    assert res.delta.abs().amax() <= EPS + 1e-6
    assert res.population.min() >= 0 and res.population.max() <= 1
    assert (res.best_fitness[1:] >= res.best_fitness[:-1]).all()
    assert (res.fitness.amax(1) >= res.pgd_fitness).all()
    again = run(model, batch, **kw)
    assert torch.equal(res.population, again.population) and torch.equal(res.fitness, again.fitness)
    assert not torch.equal(res.population, run(model, batch, seed=2, **kw).population)
    if kw.get("region") == "all":
        assert res.region_index.shape == (4, 6)


def test_variants_are_options_of_one_attack(model, batch):
    from robustune.attacks import list_attacks

    assert [n for n in list_attacks() if "evol" in n or "region" in n] == ["evolution"]
    attack = create_attack("evolution", model, eps=EPS, population=4, generations=1, order="mutate_first",
                           mutation="gradient", crossover="blend", init="mutation", fitness="ce")
    assert type(attack) is EvolutionRegion
    adv = attack(*batch)
    assert (adv - batch[0]).abs().max() <= EPS + 1e-6
    # the call reuses the last PGD step's gradient sign: no direction → a clear error
    with pytest.raises(ValueError, match="gradient sign"):
        attack.evolve(batch[0], batch[1], batch[0], torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="valid"):
        EvolutionRegion(model, EPS, order="sideways")
    with pytest.raises(ValueError, match="region"):
        EvolutionRegion(model, EPS, region="some")


def test_gradient_mutation_moves_along_the_pgd_sign(model, batch):
    """init=mutation with p_mut = 1: every variant is δ_pgd + u·σ_m·ε·sign(g), u ∈ [0,1], projected."""
    x, y = batch
    attack = EvolutionRegion(model, eps=EPS, population=3, generations=0, mutation="gradient", init="mutation",
                             p_mut=1.0, mut_sigma=0.5, pgd_alpha=2 / 255)
    res = attack.region_population(x, y, generator=torch.Generator().manual_seed(0))
    sign = attack.pgd.last_direction
    step = res.delta[:, 1:] - res.delta[:, :1]
    moved = step.abs() > 1e-7
    assert moved.any() and (step.sign()[moved] == sign.unsqueeze(1).expand_as(step)[moved]).all()
    assert step.abs().max() <= 0.5 * EPS + 1e-6


def test_warm_members_enter_the_initial_population(model, batch):
    x, y = batch
    attack = EvolutionRegion(model, eps=EPS, population=4, generations=0, pgd_alpha=2 / 255, **OLD)
    start = attack.pgd(x, y, generator=torch.Generator().manual_seed(0))
    warm = torch.full((4, 1, *x.shape[1:]), EPS / 2)
    valid = torch.tensor([True, False, True, False])
    res = attack.evolve(x, y, start, torch.Generator().manual_seed(1), warm=warm, warm_valid=valid)
    expect = project_delta(warm[:, 0], x, EPS)
    assert torch.equal(res.delta[0, 1], expect[0]) and torch.equal(res.delta[2, 1], expect[2])
    assert not torch.equal(res.delta[1, 1], expect[1])


def test_population_memory_roundtrip_and_bad_index():
    from robustune.methods.erapt_memory import PopulationMemory

    mem = PopulationMemory(2, EPS)
    mem.ensure(5, (3, 4, 4), torch.device("cpu"))
    d = (torch.rand(2, 3, 3, 4, 4) * 2 - 1) * EPS
    mem.store(torch.tensor([4, 1]), d)
    got, valid = mem.lookup(torch.tensor([1, 0, 4]))
    assert valid.tolist() == [True, False, True]
    assert (got[0] - d[1, :2]).abs().max() <= EPS / 127 and (got[2] - d[0, :2]).abs().max() <= EPS / 127
    fresh = PopulationMemory(2, EPS)
    fresh.load_state_dict(mem.state_dict())
    assert torch.equal(fresh.delta, mem.delta) and torch.equal(fresh.valid, mem.valid)
    with pytest.raises(IndexError, match="out of range"):
        mem.lookup(torch.tensor([5]))
