"""Distributed evaluation: `robustune eval` with 1 process and with 2 gloo processes, side by side.

Run: ``.venv/bin/python benchmarks/eval_scaling.py [--quick] [--classes 10 --corruptions 5
--severities 3 --per-class 10] [--model mobilenetv3_small_100] [--work DIR]``

1. Builds a synthetic ImageNet-C-layout tree of 224 px JPEGs whose class folders are ImageNet
   class ids (wnids): ``clean/{train,test}/<wnid>/`` and ``c/<corruption>/<severity>/<wnid>/``.
   The images are smooth random pictures, different per corruption and severity (only the
   layout, sizes and JPEG decoding matter here, not what a corruption does).
2. Makes a run folder of a small timm model (random init, one training step on ``clean/train``).
3. Times ``robustune eval RUN --suite corruptions`` with 1 process and with ``--nproc 2`` (gloo,
   ``OMP_NUM_THREADS=1`` each), then checks that both results.json hold identical cells
   (key, fingerprint, value, n) and identical per-image outcomes.
4. The same for PGD-10 on digits (``--suite pgd --steps 10``) with a small_cnn run.

Printed: images per configuration, wall seconds (the whole command, Python start-up and model
loading included), images/s, the ratio 2 processes / 1, the CPU seconds of the children, whether
the cells are identical, and the load average before and after. A timed figure means something
only on a quiet machine with at least 2 free cores: the load is printed so a busy run is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORRUPTIONS = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression"]


def wnids(n: int) -> list[str]:
    ids = (ROOT / "robustune" / "resources" / "imagenet_wnids.txt").read_text().split()
    return ids[:n]


def write_images(folder: Path, classes: list[str], per_class: int, seed: int, size: int = 224) -> int:
    """Smooth random 224 px JPEGs (upsampled 8x8 noise + fine noise), ``per_class`` per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
            img = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size, size, 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / c / f"{i:05d}.JPEG", quality=90)
    return len(classes) * per_class


def build_tree(work: Path, args) -> tuple[Path, int]:
    classes = wnids(args.classes)
    write_images(work / "clean" / "train", classes, 2, seed=1)
    write_images(work / "clean" / "test", classes, 2, seed=2)
    n = 0
    for k, corruption in enumerate(CORRUPTIONS[:args.corruptions]):
        for s in range(1, args.severities + 1):
            n += write_images(work / "c" / corruption / str(s), classes, args.per_class, seed=100 * k + s)
    return work / "c", n


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children) of ``cmd``; its output goes to ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code:
        sys.exit(f"failed ({code}): {' '.join(cmd)}; see {log}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustune.cli", *args]


def make_run(work: Path, name: str, sets: list[str]) -> Path:
    out = work / name
    if not (out / "model.safetensors").is_file():
        run(cli("train", "configs/erm_digits.yaml", "--out", str(out), *[a for s in sets for a in ("--set", s)]),
            work / f"{name}_train.log")
    return out


def same_cells(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    def cells(p: Path):
        data = json.loads((p / "results.json").read_text())
        return {(c["key"], c["fingerprint"]): (c["value"], c["n"]) for c in data["store"]}

    if cells(a) != cells(b):
        return False
    files = sorted(p.name for p in (a / "per_sample").glob("*.safetensors"))
    if files != sorted(p.name for p in (b / "per_sample").glob("*.safetensors")):
        return False
    for f in files:
        x, y = load_file(str(a / "per_sample" / f)), load_file(str(b / "per_sample" / f))
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def compare(work: Path, label: str, run_dir: Path, n_images: int, eval_args: list[str]) -> dict:
    """Both process counts on the same run; start-up = ``eval --suite clean --n-examples 2`` (same
    process count): Python and torch imports, torchrun and gloo, model loading, the file index."""
    row = {"what": label, "images": n_images}
    for procs in (1, 2):
        out = work / f"{label}_{procs}"
        for old in (out, work / f"{label}_{procs}_startup"):  # results.json resumes: time a fresh folder
            shutil.rmtree(old, ignore_errors=True)
        extra = ["--nproc", "2"] if procs == 2 else []
        wall, cpu = run(cli("eval", str(run_dir), "--out", str(out), *eval_args, *extra), work / f"{label}_{procs}.log")
        startup, _ = run(cli("eval", str(run_dir), "--out", str(work / f"{label}_{procs}_startup"), "--suite", "clean",
                             "--n-examples", "2", *extra), work / f"{label}_{procs}_startup.log")
        row[procs] = {"wall_s": wall, "images_per_s": n_images / wall, "cpu_s": cpu, "startup_s": startup,
                      "eval_images_per_s": n_images / max(wall - startup, 1e-6)}
    row["ratio"] = row[2]["images_per_s"] / row[1]["images_per_s"]
    row["eval_ratio"] = row[2]["eval_images_per_s"] / row[1]["eval_images_per_s"]
    row["identical"] = same_cells(work / f"{label}_1", work / f"{label}_2")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny tree (a check that it runs; times mean nothing)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--corruptions", type=int, default=5)
    ap.add_argument("--severities", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--model", default="mobilenetv3_small_100", help="a timm model (random init)")
    ap.add_argument("--pgd-examples", type=int, default=180)
    ap.add_argument("--workers", default="0",
                    help="decode workers per process of the corruption run: 0 (one thread per process, the "
                         "comparison of issue 21) or 'default' (the library's: the node's cores shared by its ranks)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the tree and runs (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.classes, args.corruptions, args.severities, args.per_class, args.pgd_examples = 2, 2, 1, 4, 16
    work = args.work or Path(tempfile.mkdtemp(prefix="eval_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    croot, n_c = build_tree(work, args)
    workers = [] if args.workers == "default" else [f"data.num_workers={int(args.workers)}"]
    timm_run = make_run(work, f"timm_run_w{args.workers}", [*workers,
        f"model.name={args.model}", "model.weights=null", "data.name=folder", f"data.root={work / 'clean'}",
        "data.train_split=train", "data.val_split=null", "data.test_split=test", "data.batch_size=4",
        "data.eval_batch_size=16", "train.epochs=1", "train.max_steps=1", "train.eval_every=0", "train.device=cpu"])
    digits_run = make_run(work, "digits_run", ["model.name=small_cnn", "train.epochs=1", "train.eval_every=0",
                                               "data.eval_batch_size=16", "train.device=cpu"])
    rows = [compare(work, "corruptions", timm_run, n_c, ["--suite", "corruptions", "--option", f"corruption_root={croot}"]),
            compare(work, "pgd10", digits_run, args.pgd_examples,
                    ["--suite", "pgd", "--steps", "10", "--eps", "8/255", "--n-examples", str(args.pgd_examples)])]
    load_after = os.getloadavg()
    print(f"# eval_scaling: {os.cpu_count()} CPUs, load average before {load_before[0]:.2f} / after "
          f"{load_after[0]:.2f} (1 min){'  [--quick: times mean nothing]' if args.quick else ''}")
    print(f"# corruptions: {args.model}, {args.classes} classes x {args.corruptions} corruptions x "
          f"{args.severities} severities x {args.per_class} images, 224 px JPEG, decode workers per process: "
          f"{args.workers}; pgd10: small_cnn on digits (in memory, no workers)")
    print("| suite | images | 1 proc: s | img/s | 2 procs: s | img/s | 2 / 1 | start-up s 1 / 2 "
          "| 2 / 1 without start-up | CPU s 1 / 2 | identical cells |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['images']} | {r[1]['wall_s']:.1f} | {r[1]['images_per_s']:.1f} | "
              f"{r[2]['wall_s']:.1f} | {r[2]['images_per_s']:.1f} | {r['ratio']:.2f}x | "
              f"{r[1]['startup_s']:.1f} / {r[2]['startup_s']:.1f} | {r['eval_ratio']:.2f}x | "
              f"{r[1]['cpu_s']:.1f} / {r[2]['cpu_s']:.1f} | {'yes' if r['identical'] else 'NO'} |")
    print(f"# work folder: {work}")
    if not all(r["identical"] for r in rows):
        sys.exit("the 1- and 2-process results differ")


if __name__ == "__main__":
    main()
