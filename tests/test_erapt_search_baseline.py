"""The equal-budget baselines of benchmarks/erapt_search.py (issue 13): budgets and best-per-image."""

import importlib.util
from pathlib import Path

import pytest
import torch

from robustune.attacks.evolution import fitness_from_outputs
from robustune.models import create_classifier

EPS = 4 / 255


@pytest.fixture(scope="module")
def search():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "erapt_search.py"
    spec = importlib.util.spec_from_file_location("erapt_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("forwards,steps,plan", [(6, 2, (1, 1)), (7, 2, (1, 2)), (20, 2, (2, 2)), (29, 2, (4, 2)),
                                                 (3, 2, (1, 1)), (28, 1, (7, 1))])
def test_restart_plan_stays_within_the_budget(search, forwards, steps, plan):
    restarts, per = search.restart_plan(forwards, steps)
    assert (restarts, per) == plan
    assert restarts * (3 * per + 1) <= max(forwards, 4)  # one 1-step restart is the least we run


def test_restarts_best_per_image_is_elitist_and_uses_the_fitness(search):
    torch.manual_seed(0)
    model = create_classifier("small_cnn", num_classes=10, width=8).eval()

    def encoder(x):
        logits = model(x)
        return logits, logits

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)
    start = (x + EPS * torch.sign(torch.randn(x.shape, generator=g))).clamp(0, 1)
    with torch.no_grad():
        clean, adv = encoder(x), encoder(start)
        pgd_fitness = fitness_from_outputs("kl", adv[0], y, clean[0])
    none = search.restarts_best(model, encoder, x, y, pgd_fitness, 0, 2, EPS / 2, EPS, "kl")
    assert torch.equal(none, pgd_fitness)
    two = search.restarts_best(model, encoder, x, y, pgd_fitness, 2, 2, EPS / 2, EPS, "kl")
    assert (two >= pgd_fitness).all() and (two > pgd_fitness).any()
    again = search.restarts_best(model, encoder, x, y, pgd_fitness, 2, 2, EPS / 2, EPS, "kl")
    assert torch.equal(two, again)  # seeded restarts
    # the steps baseline from the same start is elitist too
    steps = search.pgd_best(model, encoder, x, y, start, 2, EPS / 2, EPS, "kl")
    assert (steps >= pgd_fitness - 1e-6).all()
