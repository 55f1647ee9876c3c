"""The ``erapt`` method: FAP as a configuration, region training, weighting state, engine run."""

import json
import math

import pytest
import torch

from robustune.clip.zeroshot import create_clip_classifier
from robustune.methods import StepContext, create_method
from robustune.utils import step_generator

CLASSES = [str(i) for i in range(5)]
FAST = {"n_ctx": 2, "depth": 2, "eps": 4 / 255, "alpha": 2 / 255, "steps": 1}


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return create_clip_classifier("robustune-tiny-clip", CLASSES, templates="a photo of the digit {}.")


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=g), torch.tensor([0, 3, 4])


def build(base, name, **params):
    torch.manual_seed(1)  # the same prompt initialisation for every method
    method = create_method(name, base, {**FAST, **params})
    method.train()
    return method


def step_and_grads(method, batch, step=0):
    ctx = StepContext(epoch=0, step=step, generator=step_generator(7, step), indices=torch.arange(len(batch[1])))
    out = method.training_step(*batch, ctx)
    method.zero_grad(set_to_none=True)
    out["loss"].backward()
    grads = {k: p.grad.clone() for k, p in method.model.learner.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("kw", [{"generations": 0}, {"population": 1}, {"evolution": "off"}])
def test_degenerate_configurations_equal_fap_step_exactly(base, batch, kw):
    fap_out, fap_grads = step_and_grads(build(base, "fap"), batch)
    out, grads = step_and_grads(build(base, "erapt", weighting="fixed", **kw), batch)
    assert torch.equal(out["loss"], fap_out["loss"])
    assert torch.equal(out["logits"], fap_out["logits"])
    assert grads.keys() == fap_grads.keys() and len(grads) > 0
    assert all(torch.equal(grads[k], fap_grads[k]) for k in grads)


def test_region_step_trains_on_the_region_and_logs(base, batch):
    method = build(base, "erapt", population=4, generations=2, diagnostics_every=1, diagnostics_points=16)
    out, grads = step_and_grads(method, batch)
    logs = out["logs"]
    assert math.isfinite(out["loss"].item()) and any(g.abs().sum() > 0 for g in grads.values())
    for key in ("w_nat", "w_adv", "natural_ce", "adv_term", "pop_pairwise_l2", "pop_coverage_l2", "evo_gain"):
        assert key in logs
    assert logs["evo_gain"] >= 0 and logs["pop_pairwise_l2"] > 0
    # the adversarial term is the mean over the r = 2 fittest members: at least FAP's term on the PGD point
    fap_out, _ = step_and_grads(build(base, "fap"), batch)
    assert float(logs["adv_term"]) > 0 and float(fap_out["logs"]["adv_term"]) > 0
    # same seed, same step → same loss
    again, _ = step_and_grads(build(base, "erapt", population=4, generations=2), batch)
    assert torch.equal(again["loss"], out["loss"])


def test_neighbor_fitness_and_max_region(base, batch):
    method = build(base, "erapt", population=4, generations=1, fitness="neighbor", neighbor_k=2,
                   region_reduce="max")
    out, _ = step_and_grads(method, batch)
    assert method.evolver.neighbors.shape == (5, 2)
    assert (method.evolver.neighbors != torch.arange(5)[:, None]).all()
    assert math.isfinite(out["loss"].item())


def test_checkpoint_state_carries_weighting(base, batch):
    method = build(base, "erapt", evolution="off", dwa_window=1)
    for step in range(3):
        step_and_grads(method, batch, step)
    state = method.checkpoint_state()
    assert "weighting.window_means" in state and "weighting.lam_ema" in state
    assert not any(k.startswith("model.base") for k in state)  # prompts + weighting only
    fresh = build(base, "erapt", evolution="off", dwa_window=1)
    fresh.load_checkpoint_state(state)
    assert torch.equal(fresh.weighting.window_means, method.weighting.window_means)
    assert fresh.weighting.steps.item() == 3


def test_bad_switch_names_the_choices(base):
    from robustune.config import ConfigError

    with pytest.raises(ConfigError, match="on"):
        build(base, "erapt", evolution="maybe")
    with pytest.raises(ValueError, match="dwa"):
        build(base, "erapt", weighting="adaptive")


def test_robustune_train_runs_erapt(tmp_path):
    from robustune.cli import main

    run = tmp_path / "run"
    args = ["train", "configs/clip_tiny_digits_erapt.yaml", "--out", str(run),
            "--set", "model.weights=null", "--set", "data.options.shots=2", "--set", "train.log_every=1",
            "--set", "method.params.population=4", "--set", "method.params.diagnostics_every=2",
            "--set", "train.eval_every=0"]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "w_adv" in r]
    assert steps and any("pop_coverage_l2" in r for r in steps)
    assert (run / "model.safetensors").is_file()
    assert (run / "analysis" / "erapt_population.png").is_file()  # the report shows <run>/analysis/*.png


def test_resume_restores_weighting_state(tmp_path, crash_at_step):
    """An interrupted + resumed run == an uninterrupted one: DWA windows and collapse history are checkpointed."""
    from robustune.config import load_config
    from robustune.engine import train
    from robustune.methods.erapt import ERAPT

    sets = ["model.weights=null", "data.options.shots=2", "train.eval_every=0", "train.log_every=1",
            "train.epochs=2", "method.params.population=2", "method.params.generations=1",
            "method.params.dwa_window=1", "method.params.collapse_window=2", "method.params.diagnostics_every=0"]
    cfg = load_config("configs/clip_tiny_digits_erapt.yaml", sets)
    full = train(cfg, tmp_path / "a")
    crash_at_step(cfg, tmp_path / "b", ERAPT, 3)  # mid-epoch 2 (2 steps per epoch)
    resumed = train(cfg, tmp_path / "b", resume=True)

    def steps(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"], r["w_nat"], r["w_adv"]) for r in rows if "w_adv" in r]

    assert steps(tmp_path / "a") == steps(tmp_path / "b") and len(steps(tmp_path / "a")) == 4
    assert len({w for *_, w in steps(tmp_path / "a")}) > 1  # the weights did move
    assert torch.equal(full.method.weighting.window_means, resumed.method.weighting.window_means)


@pytest.mark.parametrize("kw", [{"fitness": "fap"}, {"fitness": "ce", "crossover": "blend", "mutation": "gaussian"}])
def test_fitness_and_operator_options_run(base, batch, kw):
    method = build(base, "erapt", population=4, generations=1, diagnostics_every=1, diagnostics_points=8, **kw)
    out, grads = step_and_grads(method, batch)
    assert math.isfinite(out["loss"].item()) and out["logs"]["evo_gain"] >= 0 and grads


def test_warm_start_resume_is_bit_identical(tmp_path, crash_at_step):
    """Warm start (index-keyed memory of the fittest member): an interrupted + resumed run == an uninterrupted one."""
    from robustune.config import load_config
    from robustune.engine import train
    from robustune.methods.erapt import ERAPT

    sets = ["model.weights=null", "data.options.shots=2", "train.eval_every=0", "train.log_every=1",
            "train.epochs=2", "method.params.population=3", "method.params.generations=1",
            "method.params.mutation=gradient", "method.params.init=mutation", "method.params.p_mut=1.0",
            "method.params.warm_start=true", "method.params.diagnostics_every=0", "method.params.dwa_window=1"]
    cfg = load_config("configs/clip_tiny_digits_erapt.yaml", sets)
    full = train(cfg, tmp_path / "a")
    seen = []
    # crash mid-epoch 2 (2 steps per epoch): the resume reads epoch 1's memory back
    crash_at_step(cfg, tmp_path / "b", ERAPT, 3, on_step=lambda ctx: seen.append(ctx.indices.clone()))
    resumed = train(cfg, tmp_path / "b", resume=True)

    def steps(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in rows if "w_adv" in r]

    assert steps(tmp_path / "a") == steps(tmp_path / "b") and len(steps(tmp_path / "a")) == 4
    assert sorted(torch.cat(seen[:2]).tolist()) == list(range(10))  # every training image, once per epoch
    mem_a, mem_b = full.method.memory, resumed.method.memory
    assert mem_a.valid.all() and mem_a.delta.abs().sum() > 0
    assert torch.equal(mem_a.delta, mem_b.delta) and torch.equal(mem_a.valid, mem_b.valid)


def test_evolve_every_and_bf16_fitness(base, batch):
    method = build(base, "erapt", population=4, generations=1, evolve_every=2, fitness_dtype="bf16",
                   mutation="gradient", init="mutation", p_mut=1.0, fitness="fap", region=1)
    on, _ = step_and_grads(method, batch, step=0)
    off, _ = step_and_grads(method, batch, step=1)  # PGD point only: FAP's term
    assert math.isfinite(on["loss"].item()) and math.isfinite(off["loss"].item())
    assert method.evolver.fitness_dtype == "bf16"
    with pytest.raises(Exception, match="evolve_every"):
        build(base, "erapt", evolve_every=0)
    with pytest.raises(ValueError, match="indices"):
        warm = build(base, "erapt", population=2, generations=1, warm_start=True)
        warm.training_step(*batch, StepContext(epoch=0, step=0, generator=step_generator(7, 0)))
    assert build(base, "erapt", warm_start=False).needs_indices is False and method.needs_indices


def test_default_region_and_point_option(base, batch, tmp_path):
    """Issue 20: the default trains on a region of 2 members (one per island); ``search: point`` is
    issue 13's single fittest point; the weights of every step are appended to weights.jsonl."""
    region = build(base, "erapt")
    assert region.evolver.region_size == 2 and region.evolver.starts == 2
    point = build(base, "erapt", search="point")
    assert point.evolver.region_size == 1 and point.evolver.starts == 1
    region._run_dir = tmp_path
    for step in range(3):
        step_and_grads(region, batch, step=step)
    rows = [json.loads(line) for line in (tmp_path / "weights.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and all({"w_nat", "w_adv"} <= r.keys() for r in rows)
    with pytest.raises(Exception, match="search must be one of region, point"):
        build(base, "erapt", search="cloud")
