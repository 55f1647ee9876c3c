"""Steps/s of DDP training with 1 vs 2 processes (CPU, gloo) at a fixed global batch.

On a 2-core CPU machine this measures the overhead of the distributed machinery (gradient
all-reduce, sampler, launch), not real scaling: that is measured on GPUs.

    python benchmarks/ddp_scaling.py [--model vit_tiny32] [--batch 64] [--steps 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(args) -> None:
    import torch
    import torch.distributed as dist

    from robustune.engine.ddp import DDPMethod
    from robustune.methods import StepContext, create_method
    from robustune.models import create_classifier

    dist.init_process_group("gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    torch.manual_seed(0)
    method = create_method(args.method, create_classifier(args.model, num_classes=10), {})
    ddp = DDPMethod(method, torch.device("cpu"))
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-3)
    size = method.model.input_size[-1]
    local = args.batch // world
    x = torch.rand(local, 3, size, size)
    y = torch.randint(0, 10, (local,))

    def step(i: int) -> None:
        out = ddp.training_step(x, y, StepContext(0, i, torch.Generator().manual_seed(i)))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    for i in range(3):
        step(i)
    dist.barrier()
    t = time.perf_counter()
    for i in range(args.steps):
        step(i)
    dist.barrier()
    elapsed = time.perf_counter() - t
    if rank == 0:
        print(json.dumps({"world": world, "steps_per_s": args.steps / elapsed}))
    dist.destroy_process_group()


def launch(nproc: int, args) -> float:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           __file__, "--worker", "--model", args.model, "--batch", str(args.batch),
           "--steps", str(args.steps), "--method", args.method]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="vit_tiny32")
    ap.add_argument("--method", default="erm")
    ap.add_argument("--batch", type=int, default=64, help="global batch")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.steps = 5
    one = launch(1, args)
    two = launch(2, args)
    print(f"{args.method} on {args.model}, global batch {args.batch}, CPU/gloo, {args.steps} steps "
          f"(threads per process: cores / processes)")
    print(f"  1 process : {one:6.2f} steps/s")
    print(f"  2 processes: {two:6.2f} steps/s   ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
