"""Our PGD against an independent implementation (torchattacks.PGD) from the same start."""

import pytest
import torch

import robustune.attacks.pgd as pgd_module
from robustune.attacks import PGD, lp_norm
from robustune.data import create_dataset

torchattacks = pytest.importorskip("torchattacks")

EPS, ALPHA, STEPS = 2 / 255, 0.5 / 255, 10


@pytest.fixture(scope="module")
def batch():
    ds = create_dataset("digits", "test")
    return ds.images[:96], torch.tensor(ds.targets[:96])


def torchattacks_start(x: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """The random start torchattacks.PGD draws after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_matches_torchattacks_per_sample(trained_tiny_model, batch, monkeypatch, random_start):
    model = trained_tiny_model.eval()
    x, y = batch
    start = torchattacks_start(x, EPS, seed=7) if random_start else x.clone()
    monkeypatch.setattr(pgd_module, "random_start", lambda x_, eps, norm, gen: start.clone())

    ours = PGD(model, eps=EPS, steps=STEPS, alpha=ALPHA, random_start=random_start)(x, y)
    torch.manual_seed(7)  # torchattacks draws its start from the global generator
    ref = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=random_start)(x, y)

    with torch.no_grad():
        ok_ours = model(ours).argmax(1) == y
        ok_ref = model(ref).argmax(1) == y
        clean = model(x).argmax(1) == y
    agreement = (ok_ours == ok_ref).float().mean().item()
    assert agreement >= 0.99, f"per-sample agreement {agreement:.3f}"
    # The attack did something on these points, so agreement is not that of two no-ops.
    assert ok_ours.float().mean() < clean.float().mean()
    # Same iterates up to float rounding: nearly all pixels identical.
    assert ((ours - ref).abs() < 1e-6).float().mean() > 0.99
    assert (lp_norm(ours - x, "Linf") <= EPS + 1e-6).all()
