"""Shared fixtures. The hub is off for every test (no network here, and tests must not need one)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models gain little from intra-op threads, and several pytest processes (or xdist workers)
# oversubscribe 2 cores badly with them; ROBUSTUNE_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("ROBUSTUNE_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own robustune cache unless a test sets one."""
    root = tmp_path_factory.getbasetemp() / "robustune-cache"
    monkeypatch.setenv("ROBUSTUNE_CACHE", str(root))


@pytest.fixture(scope="session")
def digits_splits():
    from robustune.config import DataConfig
    from robustune.data import load_splits

    return load_splits(DataConfig(name="digits"))


@pytest.fixture(scope="session")
def trained_tiny_model(tmp_path_factory):
    """small_cnn trained 4 epochs on digits (~97 % test accuracy, ~6 s): attack and GFN properties."""
    from robustune.config import load_config
    from robustune.engine import train

    cfg = load_config(None, ["model.name=small_cnn", "train.epochs=4", "optim.lr=3e-3",
                             "optim.schedule=onecycle", "train.seed=0", "train.eval_every=0"])
    torch.manual_seed(0)
    result = train(cfg, tmp_path_factory.mktemp("tiny_run"))
    model = result.method.eval_model().eval()
    return model


@pytest.fixture(scope="session")
def trained_tiny_run(trained_tiny_model, tmp_path_factory):
    """Path of the run folder the tiny model was trained in (config.yaml + model.safetensors)."""
    return next(p for p in tmp_path_factory.getbasetemp().glob("tiny_run*") if (p / "model.safetensors").exists())


class TrainingInterrupted(Exception):
    """Raised inside a training step: a crash mid-run (tests/test_faults_training.py also kills for real)."""


@pytest.fixture
def crash_at_step(monkeypatch):
    """``crash(cfg, run_dir, method_cls, step, on_step=None)``: train until ``ctx.step == step``, crash there.

    The method's ``training_step`` raises :class:`TrainingInterrupted` at that step (``on_step``
    sees every step's context first) and is restored afterwards, so the caller can resume.
    """
    from robustune.engine import train

    def crash(cfg, run_dir, method_cls, step: int, on_step=None) -> None:
        original = method_cls.training_step

        def crashing(self, images, labels, ctx):
            if on_step is not None:
                on_step(ctx)
            if ctx.step == step:
                raise TrainingInterrupted
            return original(self, images, labels, ctx)

        monkeypatch.setattr(method_cls, "training_step", crashing)
        try:
            with pytest.raises(TrainingInterrupted):
                train(cfg, run_dir)
        finally:
            monkeypatch.setattr(method_cls, "training_step", original)

    return crash
