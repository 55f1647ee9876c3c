"""Seconds per training step of ``coop``, ``apt`` and ``fap`` side by side, CLIP ViT-B-32 at batch 4.

Run: ``.venv/bin/python benchmarks/clip_step_cost.py [--quick] [--classes N] [--steps K]``

Random-init ViT-B-32 (timing does not depend on the weights) at 224 px, ``N`` classes (default 50,
about a base half of a CoOp dataset), each method with its paper preset's prompts and attack
(``coop``: 4 context tokens, clean; ``apt``: the same with CE PGD-2; ``fap``: n_ctx 2, depth 9,
KL PGD-2 and FAP's loss). A step is ``training_step`` + backward + SGD update, as in the engine.
One warm-up step, then the median of ``K`` steps; the methods are interleaved step by step so a
change in machine load hits all of them alike. ``--quick`` uses the tiny CLIP (32 px, depth 2).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

METHODS = {
    "coop": dict(n_ctx=4, ctx_init="a photo of a"),
    "apt": dict(n_ctx=4, ctx_init="a photo of a", eps=1 / 255, alpha=1 / 255, steps=2),
    "fap": dict(n_ctx=2, depth=9, eps=1 / 255, alpha=1 / 255, steps=2),
}


def build(arch: str, classes: int, depth: int):
    from robustune.clip import CLIPClassifier, create_clip
    from robustune.methods import create_method

    torch.manual_seed(0)
    base = CLIPClassifier(create_clip(arch), [f"class {i}" for i in range(classes)], ["a photo of a {}."])
    methods = {}
    for name, params in METHODS.items():
        params = dict(params, depth=depth) if "depth" in params else params
        m = create_method(name, base, params).train()
        methods[name] = (m, torch.optim.SGD(m.trainable_parameters(), lr=1e-3, momentum=0.9))
    return base, methods


def step(method, opt, x, y, k: int) -> float:
    from robustune.methods import StepContext

    ctx = StepContext(epoch=0, step=k, generator=torch.Generator().manual_seed(k))
    t0 = time.perf_counter()
    out = method.training_step(x, y, ctx)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny CLIP instead of ViT-B-32")
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    arch, depth = ("robustune-tiny-clip", 2) if args.quick else ("ViT-B-32", 9)
    base, methods = build(arch, args.classes, depth)
    size = base.input_size[-1]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, size, size, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for k in range(args.steps + 1):  # step 0 is the warm-up
        for name, (m, opt) in methods.items():
            t = step(m, opt, x, y, k)
            if k:
                times[name].append(t)
    print(f"{arch}, {size} px, batch {args.batch}, {args.classes} classes, {torch.get_num_threads()} threads, "
          f"median of {args.steps} steps")
    ref = statistics.median(times["coop"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:5s} {med:8.3f} s/step  ({med / ref:4.1f}x coop)  min {min(ts):.3f}  max {max(ts):.3f}")


if __name__ == "__main__":
    main()
