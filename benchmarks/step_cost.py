"""Time per training step of GFN and its baselines relative to ERM, side by side in one run.

Targets (issue 3): gfn / erm ≤ 1.7× (one extra forward + an input-only backward);
adv_untargeted / erm about the same; pgd_at (10 steps) / erm for scale.

    python benchmarks/step_cost.py                      # vit_tiny32, batch 64, 32 px
    python benchmarks/step_cost.py --model vit_small_patch16_224 --batch 16
    python benchmarks/step_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from robustune.methods import SetupContext, StepContext, create_method
from robustune.models import create_classifier

METHODS = {
    "erm": {},
    "gfn": {"k": 3, "eta": 0.05},
    "nbr": {"k": 3, "eta": 0.05},
    "adv_untargeted": {"eta": 0.05},
    "pgd_at": {"steps": 10},
}


def build(name: str, params: dict, model_name: str, num_classes: int):
    torch.manual_seed(0)
    model = create_classifier(model_name, num_classes=num_classes)
    method = create_method(name, model, params, num_classes=num_classes)
    if name in ("gfn", "nbr"):  # similarity from head weights: setup cost is not a step cost
        method.params.similarity_source = "head_weights"
        method.setup(SetupContext(train_set=None, device=torch.device("cpu"), seed=0))
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-3, momentum=0.9)
    return method, opt


def one_step(method, opt, x, y, step: int) -> float:
    t = time.perf_counter()
    out = method.training_step(x, y, StepContext(0, step, torch.Generator().manual_seed(step)))
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="vit_tiny32")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 3
    methods = {n: build(n, p, args.model, args.classes) for n, p in METHODS.items()}
    size = methods["erm"][0].model.input_size[-1]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, size, size, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)
    for name, (m, o) in methods.items():  # warm-up
        one_step(m, o, x, y, 0)
    times: dict[str, list[float]] = {n: [] for n in methods}
    for r in range(args.repeats):  # interleaved, so drifts in machine load hit every method alike
        for name, (m, o) in methods.items():
            times[name].append(one_step(m, o, x, y, r + 1))
    med = {n: statistics.median(t) for n, t in times.items()}
    print(f"model {args.model}, batch {args.batch}, {size} px, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats (median)")
    for name, t in med.items():
        print(f"  {name:15s} {1000 * t:8.1f} ms/step   {t / med['erm']:5.2f}x erm")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "batch": args.batch, "ms_per_step": {k: 1000 * v for k, v in med.items()},
                       "ratio_to_erm": {k: v / med["erm"] for k, v in med.items()}}, fh, indent=2)


if __name__ == "__main__":
    main()
