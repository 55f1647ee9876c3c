"""ER-APT cost, side by side in one run (docs/benchmarks.md, issue 7).

1. One ER-APT training step / one FAP training step (forward + backward), ViT-B-32 (random
   init, FAP's prompts: n_ctx 2, depth 9) at batch 4 (goal ≤ 1.5×), for: the first defaults
   (P = 8, G = 3, r = 4, uniform crossover, ±ε mutation, KL fitness), the current defaults (P = 4,
   G = 1, gradient mutation, fitness = the training term, r = 1, warm start), the current defaults
   with the cost options ``evolve_every: 2`` and ``fitness_dtype: bf16``, and ``evolution: off``.
   The configurations are interleaved (one round = one period of each, repeated), so a change of
   load on the shared machine hits all of them alike; a configuration with ``evolve_every: N``
   runs N steps per round (one evolving, N − 1 on the PGD point) and its per-step figure is the
   median over rounds of the round's mean, the others the median of their steps. Both wall time
   and process CPU time are reported (``*_s``, ``*_cpu_s``): with one thread the CPU time is
   what a step costs regardless of the machine's load or of a process pause (SIGSTOP).
   ``--configs`` picks a subset (``fap`` is always measured); ``--no-loop`` skips part 2.
2. The vectorised evolution (one batched forward per generation) / a straightforward
   per-image, per-individual loop written here as the reference (goal ≥ 5×), and whether both
   give the identical population for the same seed (the first defaults' operators: uniform
   crossover, ±ε mutation, noise variants — the loop implements those).

Usage: ``python benchmarks/erapt_cost.py [--quick] [--repeats N] [--batch B] [--configs A,B] [--no-loop]
[--out FILE]``. ``--quick`` uses the tiny CLIP architecture at 32 px and one repeat (a smoke test,
not a measurement). A small ViT-B-32 measurement on 2 CPU cores:
``--batch 2 --repeats 4 --configs erapt,erapt_every2,erapt_no_evolution --no-loop`` (≈ 160 CPU-seconds).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from robustune.attacks.evolution import (EvolutionRegion, breed, draw_generation, fitness_from_outputs,
                                         project_delta)

log = logging.getLogger("erapt_cost")


def loop_evolution(attack: EvolutionRegion, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: the same algorithm and random draws, one image and one individual at a time."""
    b, p, eps = x.shape[0], attack.size, attack.eps
    s = math.ceil(p / 2)

    def fitness(i: int, adv: torch.Tensor, clean) -> float:
        logits, feats = attack.encode(adv[None])
        return float(fitness_from_outputs(attack.fitness, logits, y[i:i + 1], clean[0], feats, clean[1],
                                          attack.neighbors)[0])

    noise = torch.rand((b, p - 1, *x.shape[1:]), generator=gen, dtype=x.dtype) * 2 - 1
    pops, fits, cleans = [], [], []
    for i in range(b):
        clean = attack.encode(x[i:i + 1])
        d0 = start[i] - x[i]
        members = [d0] + [project_delta(d0 + attack.sigma * eps * noise[i, j], x[i], eps) for j in range(p - 1)]
        pops.append(members)
        fits.append([fitness(i, x[i] + d, clean) for d in members])
        cleans.append(clean)
    for _ in range(attack.generations if p > 1 else 0):
        draws = draw_generation(gen, b, s, p - s, tuple(x.shape[1:]), attack.crossover, attack.mutation,
                                x.device, x.dtype)
        for i in range(b):
            order = sorted(range(p), key=lambda j: -fits[i][j])[:s]  # stable: ties keep the lower index
            survivors, surv_fit = [pops[i][j] for j in order], [fits[i][j] for j in order]
            children, child_fit = [], []
            for k in range(p - s):
                one = type(draws)(draws.parents[i, k], draws.crossover[i, k], draws.gate[i, k],
                                  draws.mutation[i, k])
                a, c = survivors[int(one.parents[0])], survivors[int(one.parents[1])]
                child = project_delta(breed(a, c, one, eps, attack.sigma, attack.p_mut, attack.crossover,
                                            attack.mutation), x[i], eps)
                children.append(child)
                child_fit.append(fitness(i, x[i] + child, cleans[i]))
            pops[i], fits[i] = survivors + children, surv_fit + child_fit
    population = torch.stack([torch.stack(m) for m in pops]) + x.unsqueeze(1)
    return population, torch.tensor(fits)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_evolution(model, x, y, repeats: int, population: int, generations: int) -> dict:
    attack = EvolutionRegion(model, eps=1 / 255, population=population, generations=generations,
                             crossover="uniform", mutation="sign", init="noise", p_mut=0.1, region=population // 2,
                             encoder=model.logits_and_features if hasattr(model, "logits_and_features") else None)
    start = attack.pgd(x, y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        t_vec, res = timed(lambda: attack.evolve(x, y, start, torch.Generator().manual_seed(1)), repeats)
        t_loop, (pop, fit) = timed(lambda: loop_evolution(attack, x, y, start, torch.Generator().manual_seed(1)),
                                   repeats)
    return {"vectorised_s": t_vec, "loop_s": t_loop, "speedup": t_loop / t_vec,
            "identical_population": bool(torch.equal(pop, res.population)),
            "max_abs_population_diff": float((pop - res.population).abs().max()),
            "max_abs_fitness_diff": float((fit - res.fitness).abs().max())}


FIRST = {"population": 8, "generations": 3, "region": 4, "crossover": "uniform", "mutation": "sign",
         "init": "noise", "p_mut": 0.1, "mut_sigma": None, "fitness": "kl", "warm_start": False}
STEP_CONFIGS = {
    "fap": ("fap", {}),
    "erapt_first_defaults": ("erapt", FIRST),
    "erapt": ("erapt", {}),
    "erapt_every2": ("erapt", {"evolve_every": 2}),
    "erapt_bf16": ("erapt", {"fitness_dtype": "bf16"}),
    "erapt_every2_bf16": ("erapt", {"evolve_every": 2, "fitness_dtype": "bf16"}),
    "erapt_no_evolution": ("erapt", {"evolution": False}),
    # issue 20: the region default above (2 islands) against issue 13's point and FAP with more PGD steps
    "erapt_point": ("erapt", {"search": "point"}),
    "fap_pgd4": ("fap", {"steps": 4}),
    "fap_pgd8": ("fap", {"steps": 8}),
}


def bench_steps(base, repeats: int, batch: int, quick: bool, keys: tuple[str, ...] = tuple(STEP_CONFIGS)) -> dict:
    """Seconds per training step (forward + backward) of each configuration, interleaved (module docstring)."""
    from robustune.methods import StepContext, create_method
    from robustune.utils import step_generator

    common = {"n_ctx": 2, "depth": 2 if quick else 9, "diagnostics_every": 0}
    size = base.input_size[-1]
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    y = torch.arange(batch) % base.num_classes
    methods, counters, times = {}, {}, {}
    for key in ("fap", *[k for k in keys if k != "fap"]):
        name, params = STEP_CONFIGS[key]
        torch.manual_seed(0)
        kw = {**common, **params} if name == "erapt" else {"n_ctx": 2, "depth": common["depth"], **params}
        methods[key] = create_method(name, base, kw).train()
        counters[key], times[key] = 0, []

    def one_step(key: str) -> tuple[float, float]:
        method, step = methods[key], counters[key]
        counters[key] += 1
        ctx = StepContext(epoch=0, step=step, generator=step_generator(0, step), indices=torch.arange(batch))
        t0, c0 = time.perf_counter(), time.process_time()
        loss = method.training_step(x, y, ctx)["loss"]
        method.zero_grad(set_to_none=True)
        loss.backward()
        return time.perf_counter() - t0, time.process_time() - c0

    period = {key: STEP_CONFIGS[key][1].get("evolve_every", 1) for key in methods}
    for key in methods:  # warm-up: one period (and the warm start's first visit)
        for _ in range(period[key]):
            one_step(key)
    cpu = {key: [] for key in methods}
    for _ in range(repeats):
        for key in methods:
            wall, used = zip(*[one_step(key) for _ in range(period[key])])
            times[key].append(statistics.fmean(wall))
            cpu[key].append(statistics.fmean(used))
    out = {f"{key}_s": statistics.median(t) for key, t in times.items()}
    out.update({f"{key}_cpu_s": statistics.median(t) for key, t in cpu.items()})
    out["rounds"] = {key: {"wall_s": times[key], "cpu_s": cpu[key]} for key in methods}
    for key in methods:
        if key != "fap":
            out[f"{key}_over_fap"] = out[f"{key}_s"] / out["fap_s"]
            out[f"{key}_cpu_over_fap"] = out[f"{key}_cpu_s"] / out["fap_cpu_s"]
        log.info("%-22s %.3fs/step wall (%.2f× FAP), %.3fs CPU (%.2f× FAP)", key, out[f"{key}_s"],
                 out[f"{key}_s"] / out["fap_s"], out[f"{key}_cpu_s"], out[f"{key}_cpu_s"] / out["fap_cpu_s"])
    return out


def build_model(quick: bool, classes: int):
    from robustune.clip.zeroshot import create_clip_classifier

    names = [f"class {i}" for i in range(classes)]
    if quick:
        from robustune.clip.tiny import register_tiny_clip

        register_tiny_clip()
        return create_clip_classifier("robustune-tiny-clip", names), 32
    return create_clip_classifier("ViT-B-32", names), 224


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--configs", default=None, help=f"comma-separated subset of {', '.join(STEP_CONFIGS)}")
    ap.add_argument("--no-loop", action="store_true", help="skip the vectorised-vs-loop comparison")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    keys = tuple(args.configs.split(",")) if args.configs else tuple(STEP_CONFIGS)
    unknown = sorted(set(keys) - set(STEP_CONFIGS))
    if unknown:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)}; valid: {', '.join(STEP_CONFIGS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    torch.set_grad_enabled(True)
    repeats = args.repeats or (1 if args.quick else 3)
    model, size = build_model(args.quick, args.classes)
    model.eval()
    x = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    y = torch.arange(args.batch) % args.classes
    result = {"setting": {"model": "tiny-clip 32px" if args.quick else "ViT-B-32 (random init) 224px",
                          "batch": args.batch, "repeats": repeats, "bf16_autocast_available":
                          torch.amp.is_autocast_available("cpu"),
                          "threads": torch.get_num_threads(), "platform": platform.platform()}}
    result["setting"]["configs"] = list(keys)
    result["setting"]["loadavg_start"] = os.getloadavg()[0]
    t0 = time.perf_counter()
    result["step"] = bench_steps(model, repeats, args.batch, args.quick, keys)
    result["step_seconds_total"] = time.perf_counter() - t0
    for key in ("erapt", "erapt_every2", "erapt_first_defaults"):
        if f"{key}_over_fap" in result["step"]:
            log.info("%s step / FAP step: %.2f× wall, %.2f× CPU (goal ≤ 1.5× at the defaults)", key,
                     result["step"][f"{key}_over_fap"], result["step"][f"{key}_cpu_over_fap"])
    if not args.no_loop:
        result["evolution"] = bench_evolution(model, x, y, repeats, 8, 3)
        log.info("evolution: vectorised %.3fs, loop %.3fs → %.1f× (goal ≥ 5×); identical population: %s",
                 result["evolution"]["vectorised_s"], result["evolution"]["loop_s"],
                 result["evolution"]["speedup"], result["evolution"]["identical_population"])
    result["setting"]["loadavg_end"] = os.getloadavg()[0]
    result["setting"]["cpu_seconds"] = time.process_time()
    if args.out:
        from robustune.files import write_json

        write_json(args.out, result)
    log.info(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
