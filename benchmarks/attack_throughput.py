"""Attack throughput, side by side in one run (docs/benchmarks.md, issue 5).

1. images/s of PGD-100 and of AutoAttack "standard" (APGD-CE, APGD-T 9×100, FAB-T 9, Square
   5000) on the same fixed model and batch, and their ratio;
2. APGD-T seconds with 9 target classes (AutoAttack standard) vs all-but-one (99) on a
   100-class model, and their ratio (torchattacks' own AutoAttack default is n−1 targets).

The model is ``vit_tiny32`` with random weights (seed 0) and the batch is random images
labelled with the model's own predictions, so every point starts correctly classified; ε is
small (0.5/255) so most points survive each component and AutoAttack does its full work — an
upper bound on its cost, since on a real model points fooled early leave later components less
to do. One warm-up call each, then the median of ``--repeats`` calls, the attacks interleaved so
a change of machine load hits all of them alike.

Usage: ``python benchmarks/attack_throughput.py [--quick] [--batch N] [--repeats K]``.
``--quick`` uses a batch of 4 and 10× fewer iterations/queries (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustune.attacks import APGDT, PGD, AutoAttack
from robustune.models import create_classifier

EPS = 0.5 / 255


def fixed_problem(num_classes: int, batch: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = create_classifier("vit_tiny32", num_classes).eval()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def interleaved(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny batch, 10x fewer iterations")
    parser.add_argument("--batch", type=int, default=None, help="images per batch (default 64; 4 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3; 1 with --quick)")
    args = parser.parse_args()
    batch = args.batch or (4 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 3)
    scale = 10 if args.quick else 1
    steps = 100 // scale
    fast = {"apgd-ce": {"steps": steps}, "apgd-t": {"steps": steps}, "fab-t": {"steps": steps},
            "square": {"n_queries": 5000 // scale}} if args.quick else None

    model, x, y = fixed_problem(10, batch)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    pgd = PGD(model, eps=EPS, steps=steps, alpha=EPS / 4)
    aa = AutoAttack(model, eps=EPS, overrides=fast)
    t = interleaved({"pgd": lambda: pgd(x, y, generator=gen()),
                     "autoattack": lambda: aa(x, y, generator=gen())}, repeats)
    with torch.no_grad():
        robust = (model(aa(x, y, generator=gen())).argmax(1) == y).float().mean().item()
    print(f"model vit_tiny32 (random init), batch {batch}, eps 0.5/255, threads {torch.get_num_threads()}"
          f"{' [QUICK: not a measurement]' if args.quick else ''}")
    print(f"PGD-{steps}:      {batch / t['pgd']:9.2f} images/s  ({t['pgd']:.2f} s per batch)")
    print(f"AutoAttack:   {batch / t['autoattack']:9.2f} images/s  ({t['autoattack']:.2f} s per batch, "
          f"robust after it {robust:.2f})")
    print(f"AutoAttack / PGD-{steps} time ratio: {t['autoattack'] / t['pgd']:.1f}x")

    model100, x100, y100 = fixed_problem(100, batch)
    atks = {n: APGDT(model100, eps=EPS, steps=steps, n_target_classes=n) for n in (9, None)}
    t = interleaved({str(n): (lambda a=a: a(x100, y100, generator=gen())) for n, a in atks.items()},
                    repeats)
    print(f"APGD-T on 100 classes, {steps} iterations per target:")
    print(f"  9 targets:  {t['9']:.2f} s per batch")
    print(f"  99 targets: {t['None']:.2f} s per batch")
    print(f"  99 / 9 time ratio: {t['None'] / t['9']:.1f}x (cost model: 11x)")


if __name__ == "__main__":
    main()
