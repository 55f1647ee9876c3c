"""Corruption-suite throughput: today's main-thread loader vs the new loader vs RobustBench's loop.

    python benchmarks/eval_throughput.py --quick --json runs/eval_throughput.json

On a synthetic ImageNet-C tree of 224 px JPEGs made here (``<root>/ImageNet-C/<corruption>/<sev>/
<wnid>/<file>``: the 1,000 ImageNet wnid folders, files named as RobustBench's 5,000-image list
``helper_files/imagenet_test_image_ids.txt`` so its loader finds them and labels them by the same
wnid index), one small timm model (``--model``: resnet18 by default, random weights, seed 0), the
same images, three loops side by side in one run, interleaved per round so a change of machine load
hits all alike:

- ``today``: ``build_loader(ds, bs)`` as every evaluation loop used it before (main-thread PIL
  decode, float32 items, no workers) feeding ``model(x).argmax``;
- ``new``: :func:`robustune.eval.clean.predict` with ``LoaderOptions(num_workers=2)`` (uint8
  transport, conversion on the device, prefetch);
- ``robustbench``: RobustBench 1.1.1's ``load_imagenetc`` (one ``DataLoader`` batch of all the
  images, 2 workers, float32) then ``clean_accuracy``, per cell, as its ``eval.py`` does. It runs in
  a separate virtual environment (``--rb-venv``, created on first use with ``pip install --no-deps
  robustbench==1.1.1`` and the few modules its package import needs; torch / timm come from this
  venv through a .pth file; its AutoAttack import, unused by this loop, is stubbed).

Printed: images/s of each, ``loader_speedup`` = new / today, ``robustbench_speedup`` = new /
robustbench, and whether all three give the same accuracy and the same per-image predictions.
Speeds are wall time over the same images in one run: quote them with the machine's load.

The loader can only save what decode costs beside the forward. The run measures per image today's
item d_today, the new worker's item d_new and the forward f (on ``--threads`` threads) and prints the
bound they put on any loader that keeps the forward as it is, sharing the machine's cores:
loader_speedup ≤ (d_today + f) / max((d_new + threads·f) / cores, f), and the fraction of it reached
(``loader_speedup_bound``, ``bound_reached`` in the JSON). On 2 cores it is 1.01–1.17× for resnet18,
mobilenetv3_small_050 and timm's test_vit (docs/benchmarks.md): a GPU, whose forward is far below
the decode, is where the loader's gain can show (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RB_VERSION = "1.1.1"
RB_EXTRAS = ["geotorch==0.4.0", "torchdiffeq==0.2.5", "gdown==6.5.1", "beautifulsoup4==4.15.0",
             "soupsieve==4.1.4", "pandas==3.1.1"]
MODEL = "resnet18"

RB_RUNNER = r"""
import json, sys, time, types
for name in ("autoattack", "autoattack.state"):  # imported by robustbench.eval, unused by this loop
    stub = types.ModuleType(name); stub.__path__ = []
    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})
    stub.__getattr__ = missing
    sys.modules[name] = stub
import torch
from robustbench.data import load_imagenetc
from robustbench.utils import clean_accuracy
from robustune.models import create_classifier
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(0)
model = create_classifier(args["model"], num_classes=1000).eval()
out = []
for corruption, severity in args["cells"]:
    t0 = time.perf_counter()
    x, y = load_imagenetc(args["n"], severity, args["root"], False, [corruption])
    acc = clean_accuracy(model, x, y, batch_size=args["batch"], device=torch.device("cpu"))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + args["batch"]]).argmax(1) for i in range(0, len(x), args["batch"])])
    out.append({"seconds": seconds, "n": len(y), "accuracy": acc, "pred": pred.tolist(), "label": y.tolist()})
print(json.dumps(out))
"""


def ensure_rb_venv(venv: Path) -> Path:
    """A separate venv holding robustbench (never the project's venv); returns its python."""
    python = venv / "bin" / "python"
    if python.exists():
        return python
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "project_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", f"robustbench=={RB_VERSION}",
                    *RB_EXTRAS, "setuptools<81"], check=True)
    return python


def rb_image_ids(python: Path) -> list[str]:
    code = ("import importlib.util, pathlib; s = importlib.util.find_spec('robustbench'); "
            "print(pathlib.Path(s.origin).parent / 'helper_files' / 'imagenet_test_image_ids.txt')")
    path = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def make_tree(root: Path, ids: list[str], cells: list[tuple[str, int]], size: int = 224) -> None:
    """JPEG (q85) files for ``ids`` in every cell, all 1,000 wnid folders present (the label space)."""
    from PIL import Image

    from robustune.data.robustness_sets import imagenet_wnids

    rng = np.random.default_rng(0)
    for corruption, severity in cells:
        cell = root / "ImageNet-C" / corruption / str(severity)
        for wnid in imagenet_wnids():
            (cell / wnid).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            path = cell / image_id
            if not path.exists():
                base = rng.integers(0, 255, size=(size // 16, size // 16, 3)).astype(np.uint8)
                noise = rng.integers(0, 24, size=(size, size, 3)).astype(np.uint8)
                img = np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR)) // 2 + noise
                Image.fromarray(img.astype(np.uint8)).save(path, quality=85)


def today_loop(model, ds, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation loop as it was: main-thread loader, float32 items (robustune before issue 22)."""
    from robustune.data.splits import build_loader

    preds, labels = [], []
    with torch.no_grad():
        for x, y in build_loader(ds, batch):
            preds.append(model(x).argmax(1))
            labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


def per_image_costs(model, ds, batch: int, threads: int) -> dict:
    """Per-image seconds measured here: today's item (PIL decode + float32 tensor) ``d_today``, the new
    loader's worker item (PIL decode + uint8 tensor) ``d_new``, the forward on ``threads`` threads ``f``;
    and the bound they put on loader_speedup when decode and forward share this machine's cores.

    A loader that leaves the forward as it is can at best spread the core-seconds of one image,
    d_new + threads·f, over the cores, and cannot beat the forward's own wall time:
    bound = (d_today + f) / max((d_new + threads·f) / cores, f).
    """
    from robustune.data.loading import available_cores, uint8_view

    n = min(100, len(ds))
    new_items = uint8_view(ds)
    costs = {}
    for key, source in (("d_today", ds), ("d_new", new_items)):
        source[0]
        passes = []
        for _ in range(3):  # the median of three passes over the same n images
            t0 = time.perf_counter()
            for i in range(n):
                source[i]
            passes.append((time.perf_counter() - t0) / n)
        costs[key] = statistics.median(passes)
    x = torch.stack([ds[i][0] for i in range(min(batch, len(ds)))])
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(3):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    costs["f"] = statistics.median(times) / len(x)
    cores = costs["cores"] = available_cores()
    costs["bound"] = (costs["d_today"] + costs["f"]) / max((costs["d_new"] + threads * costs["f"]) / cores,
                                                           costs["f"])
    return costs


def run(args) -> dict:
    from robustune.data.robustness_sets import corruption_cell
    from robustune.data.loading import LoaderOptions
    from robustune.eval.clean import predict
    from robustune.models import create_classifier

    python = ensure_rb_venv(args.rb_venv)
    ids = rb_image_ids(python)[: args.n]
    cells = [(c, 3) for c in args.corruptions.split(",")]
    make_tree(args.root, ids, cells)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_classifier(args.model, num_classes=1000).eval()
    costs = per_image_costs(model, corruption_cell(args.root / "ImageNet-C", *cells[0]), args.batch, args.threads)
    times = {"today": [], "new": [], "robustbench": []}
    results: dict[str, dict] = {}
    for round_ in range(args.rounds):
        for loop in ("today", "new", "robustbench"):
            t0 = time.perf_counter()
            if loop == "robustbench":
                payload = json.dumps({"root": str(args.root), "cells": cells, "n": len(ids), "batch": args.batch,
                                      "model": args.model, "threads": args.threads})
                env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                done = subprocess.run([str(python), "-c", RB_RUNNER, payload], capture_output=True,
                                      text=True, env=env)
                if done.returncode:
                    raise RuntimeError(f"the RobustBench loop failed:\n{done.stderr[-3000:]}")
                per_cell = json.loads(done.stdout.strip().splitlines()[-1])
                seconds = sum(c["seconds"] for c in per_cell)  # its load + accuracy, not interpreter start-up
                by_path = {}
                for c, cell in zip(cells, per_cell):
                    by_path[c] = dict(zip(ids, cell["pred"]))
                results[loop] = {"accuracy": [c["accuracy"] for c in per_cell], "by_path": by_path}
            else:
                accs, by_path = [], {}
                for c in cells:
                    ds = corruption_cell(args.root / "ImageNet-C", *c)
                    if loop == "today":
                        pred, y = today_loop(model, ds, args.batch)
                    else:
                        pred, y = predict(model, ds, args.batch, "cpu", loader=LoaderOptions(num_workers=2))
                    accs.append((pred == y).double().mean().item())
                    rel = [str(Path(p).relative_to(args.root / "ImageNet-C" / c[0] / str(c[1]))) for p, _ in ds.samples]
                    by_path[c] = dict(zip(rel, pred.tolist()))
                seconds = time.perf_counter() - t0
                results[loop] = {"accuracy": accs, "by_path": by_path}
            times[loop].append(seconds)
    n_images = len(ids) * len(cells)
    rate = {k: n_images / statistics.median(v) for k, v in times.items()}
    same_acc = all(np.allclose(results[k]["accuracy"], results["today"]["accuracy"], atol=1e-12) for k in results)
    same_pred = all(results[k]["by_path"] == results["today"]["by_path"] for k in results)
    return {"images": n_images, "cells": cells, "model": args.model, "batch": args.batch, "threads": args.threads,
            "rounds": args.rounds, "images_per_s": rate, "seconds": times,
            "loader_speedup": rate["new"] / rate["today"], "robustbench_speedup": rate["new"] / rate["robustbench"],
            "accuracy": {k: v["accuracy"] for k, v in results.items()}, "same_accuracy": bool(same_acc),
            "same_predictions": bool(same_pred), "load": os.getloadavg(), "cores": costs["cores"],
            "per_image_ms": {k: v * 1e3 for k, v in costs.items() if k.startswith(("d_", "f"))},
            "loader_speedup_bound": costs["bound"], "bound_reached": (rate["new"] / rate["today"]) / costs["bound"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 images, one cell, one round (a few minutes on 2 cores)")
    ap.add_argument("--n", type=int, default=5000, help="images per cell (RobustBench's list has 5,000)")
    ap.add_argument("--corruptions", default="gaussian_noise,fog")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median time of each loop counts")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--model", default=MODEL, help="timm model (random weights): resnet18, mobilenetv3_small_050, ...")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads in every loop")
    ap.add_argument("--root", type=Path, default=Path("runs/benchmarks/eval_throughput"))
    ap.add_argument("--rb-venv", type=Path, default=Path("runs/benchmarks/robustbench-venv"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.corruptions, args.rounds = 500, args.corruptions.split(",")[0], 1
    r = run(args)
    print(f"{r['images']} images ({len(r['cells'])} cell(s)), {r['model']}, batch {r['batch']}, {r['threads']} threads, "
          f"median of {r['rounds']} round(s); load average {r['load'][0]:.2f} on {r['cores']} cores")
    for k, v in r["images_per_s"].items():
        print(f"  {k:12s} {v:8.1f} images/s   accuracy {r['accuracy'][k]}")
    print(f"loader_speedup (new / today)             {r['loader_speedup']:.2f}x")
    ms = r["per_image_ms"]
    print(f"  per image: today's item {ms['d_today']:.2f} ms, new item {ms['d_new']:.2f} ms, forward {ms['f']:.2f} ms "
          f"on {r['threads']} threads")
    print(f"loader_speedup bound on {r['cores']} cores      {r['loader_speedup_bound']:.2f}x   "
          f"(reached {100 * r['bound_reached']:.0f} % of it)")
    print(f"robustbench_speedup (new / robustbench)  {r['robustbench_speedup']:.2f}x")
    print(f"same_accuracy {r['same_accuracy']}   same_predictions (per image, by file) {r['same_predictions']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
