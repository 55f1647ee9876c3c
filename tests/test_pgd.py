import pytest
import torch

from robustune.attacks import FGSM, PGD, create_attack, lp_norm
from robustune.data import create_dataset


@pytest.fixture(scope="module")
def batch():
    ds = create_dataset("digits", "test")
    return ds.images[:64], torch.tensor(ds.targets[:64])


@pytest.mark.parametrize("norm,eps", [("Linf", 8 / 255), ("L2", 0.5)])
def test_pgd_stays_in_ball_and_box(trained_tiny_model, batch, norm, eps):
    x, y = batch
    adv = PGD(trained_tiny_model, eps=eps, steps=5, norm=norm)(x, y)
    assert (lp_norm(adv - x, norm) <= eps + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1


def test_eps_zero_gives_clean_accuracy(trained_tiny_model, batch):
    x, y = batch
    adv = PGD(trained_tiny_model, eps=0.0, steps=5)(x, y)
    assert torch.equal(adv, x)


def test_pgd_lowers_accuracy_and_restores_train_flag(trained_tiny_model, batch):
    x, y = batch
    model = trained_tiny_model
    model.train()
    first, *_, last = model.backbone.children()
    first.eval()  # a mixed state must come back exactly
    adv = PGD(model, eps=8 / 255, steps=10)(x, y)
    assert model.training and not first.training and last.training
    model.eval()
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(adv).argmax(1) == y).float().mean()
    assert robust < clean


def test_same_seed_same_result_and_no_parameter_gradients(trained_tiny_model, batch):
    x, y = batch
    trained_tiny_model.zero_grad(set_to_none=True)
    a = PGD(trained_tiny_model, eps=4 / 255, steps=3, seed=7)(x, y)
    b = PGD(trained_tiny_model, eps=4 / 255, steps=3, seed=7)(x, y)
    c = PGD(trained_tiny_model, eps=4 / 255, steps=3, seed=8)(x, y)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(p.grad is None for p in trained_tiny_model.parameters())


def test_fgsm_and_registry(trained_tiny_model, batch):
    x, y = batch
    adv = create_attack("fgsm", trained_tiny_model, eps=2 / 255)(x, y)
    assert isinstance(create_attack("pgd", trained_tiny_model, eps=1 / 255), PGD)
    assert (adv - x).abs().max() <= 2 / 255 + 1e-6
    with pytest.raises(KeyError, match="Valid choices"):
        create_attack("pgdd", trained_tiny_model, eps=1 / 255)


def test_per_channel_eps(trained_tiny_model, batch):
    x, y = batch
    eps = torch.tensor([1 / 255, 2 / 255, 4 / 255]).view(1, 3, 1, 1)
    adv = FGSM(trained_tiny_model, eps=eps)(x, y)
    per_channel = (adv - x).abs().amax(dim=(0, 2, 3))
    assert (per_channel <= eps.flatten() + 1e-6).all()
