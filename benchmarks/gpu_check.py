"""A GPU check ready to run: paper presets at real size, the corruption suite's loaders, PGD under the policy.

Run on a CUDA machine (``scripts/gpu_check.sh`` prepares one without network and runs this):

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json

Without CUDA it prints one line and exits 0. ``--smoke`` runs every section on the CPU with tiny
models and a few images (it checks the script, its numbers mean nothing).

Sections (each figure is measured here, in this run; the output format is in docs/benchmarks.md):

1. ``presets``: each paper preset (GFN ViT-B/16 ImageNet, FAP and ER-APT CLIP ViT-B/32, gfn_det
   ViT-B/16 Faster R-CNN on COCO) for a few training steps at its real image size and batch, random
   weights (the time does not depend on them), under the preset's precision: s/step, images/s,
   peak GPU memory.
2. ``corruptions``: the corruption suite's loop (``robustune.eval.clean.predict``) on a synthetic
   ImageNet-C tree of 224 px JPEGs made here, ViT-B/16: PIL workers vs batched GPU decode, fp32
   vs bf16, images/s.
3. ``pgd``: PGD-10 (ε = 4/255) robust-accuracy loop on ViT-B/16, fp32 vs the bf16 policy (TF32
   gradient steps, fp32 re-check), images/s and whether the per-sample outcomes agree.
4. ``projections``: the wall time of each paper experiment from those figures (images / rate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Paper experiments: images per epoch x epochs (or images evaluated), for the projections.
EXPERIMENTS = {
    "gfn_imagenet_finetune": ("gfn_vit_b16_imagenet", 1_281_167 * 10),
    "fap_imagenet_16shot": ("fap_vit_b32", 16_000 * 10),
    "erapt_imagenet_16shot": ("erapt_vit_b32", 16_000 * 10),
    "gfn_det_coco": ("det_gfn_vit_b16_coco", 117_266 * 12),
    "imagenet_c_full": ("corruptions", 50_000 * 75),
    "pgd10_robustbench_5000": ("pgd", 5_000),
}


def _cfg(preset: str):
    from robustune.config import load_config

    return load_config(ROOT / "configs" / f"{preset}.yaml")


def _timed_steps(method, opt, batch, device, precision: str, steps: int) -> dict:
    from robustune.methods import StepContext
    from robustune.precision import autocast

    x, y = batch
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for k in range(steps + 1):  # step 0 warms up (cuDNN / allocator)
        ctx = StepContext(epoch=0, step=k, generator=torch.Generator(device=device).manual_seed(k),
                          indices=torch.arange(len(x), device=device))
        _sync(device)
        t0 = time.perf_counter()
        with autocast(precision, device):
            out = method.training_step(x, y, ctx)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        _sync(device)
        if k:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"s_per_step": s, "images_per_s": len(x) / s, "batch": len(x), "peak_gib": peak,
            "precision": precision, "steps": steps}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _classifier_batch(n: int, size: int, classes: int, device):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 3, size, size, generator=g).to(device),
            torch.randint(0, classes, (n,), generator=g).to(device))


def preset_gfn(device, smoke: bool, steps: int) -> dict:
    from robustune.methods import SetupContext, create_method
    from robustune.models import create_classifier

    cfg = _cfg("gfn_vit_b16_imagenet")
    name, classes, batch = ("vit_tiny32", 10, 8) if smoke else (cfg.model.name, 1000, cfg.data.batch_size)
    model = create_classifier(name, num_classes=classes)
    params = dict(cfg.method.params, similarity_source="head_weights", k=min(cfg.method.params["k"], classes - 1))
    params.pop("max_per_class", None)
    method = create_method(cfg.method.name, model, params, num_classes=classes).to(device).train()
    method.setup(SetupContext(train_set=None, device=device, seed=0))
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-4, momentum=0.9)
    size = model.input_size[-1]
    precision = "fp32" if smoke else cfg.train.precision
    return _timed_steps(method, opt, _classifier_batch(batch, size, classes, device), device, precision, steps)


def preset_clip(preset: str, device, smoke: bool, steps: int) -> dict:
    from robustune.clip import CLIPClassifier, create_clip
    from robustune.methods import create_method

    cfg = _cfg(preset)
    arch, classes = ("robustune-tiny-clip", 10) if smoke else (cfg.model.name.split(":", 1)[1], 1000)
    base = CLIPClassifier(create_clip(arch), [f"class {i}" for i in range(classes)], ["a photo of a {}."])
    params = dict(cfg.method.params)
    if smoke and "depth" in params:
        params["depth"] = 2
    method = create_method(cfg.method.name, base, params, num_classes=classes).to(device).train()
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-3, momentum=0.9)
    size = base.input_size[-1]
    precision = "fp32" if smoke else cfg.train.precision
    batch = _classifier_batch(cfg.data.batch_size, size, classes, device)
    return _timed_steps(method, opt, batch, device, precision, steps)


def preset_det(device, smoke: bool, steps: int) -> dict:
    from robustune.methods import create_method
    from robustune.models.detectors import create_detector

    cfg = _cfg("det_gfn_vit_b16_coco")
    kwargs = dict(cfg.model.kwargs)
    backbone, classes, size, batch = ("vit_tiny32", 10, 64, 2) if smoke else \
        (cfg.model.name.split(":", 1)[1], 80, int(kwargs["min_size"]), cfg.data.batch_size)
    if smoke:
        kwargs = {"min_size": size, "max_size": size, "fpn_channels": 32}
    torch.manual_seed(0)
    det = create_detector(backbone, classes, **kwargs)
    params = dict(cfg.method.params, similarity_source="head_weights", k=min(cfg.method.params["k"], classes - 1))
    method = create_method(cfg.method.name, det, params, num_classes=classes).to(device).train()
    opt = torch.optim.AdamW(method.trainable_parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        boxes = torch.cat([xy, xy + 16 + torch.rand(4, 2, generator=g) * size * 0.3], 1)
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(0, classes, (4,), generator=g).to(device)})
    precision = "fp32" if smoke else cfg.train.precision
    return _timed_steps(method, opt, (images, targets), device, precision, steps)


def make_tree(root: Path, classes: int, per_class: int, size: int) -> Path:
    """A synthetic ImageNet-C cell ``root/gaussian_noise/3/<wnid>/*.JPEG`` of smooth noisy JPEGs (q85)."""
    import numpy as np
    from PIL import Image

    from robustune.data.robustness_sets import imagenet_wnids

    rng = np.random.default_rng(0)
    for wnid in imagenet_wnids()[:classes]:
        folder = root / "gaussian_noise" / "3" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = rng.integers(0, 255, size=(size // 8, size // 8, 3)).astype(np.uint8)
            img = Image.fromarray(base).resize((size, size), Image.BILINEAR)
            img.save(folder / f"{i}.JPEG", quality=85)
    return root


def corruption_loaders(device, smoke: bool, tree: Path) -> dict:
    from robustune.data.robustness_sets import corruption_cell
    from robustune.data.loading import LoaderOptions
    from robustune.eval.clean import predict
    from robustune.models import create_classifier

    model = create_classifier("vit_tiny32" if smoke else "vit_base_patch16_224", num_classes=1000).to(device)
    cell = corruption_cell(tree, "gaussian_noise", 3)
    batch = 16 if smoke else 256
    out, preds = {}, {}
    decoders = ("pil", "torchvision")
    for decode in decoders:
        for precision in ("fp32", "bf16"):
            opts = LoaderOptions(decode=decode)
            predict(model, cell, batch, device, loader=opts, precision=precision)  # warm-up (workers, kernels)
            _sync(device)
            t0 = time.perf_counter()
            pred, _ = predict(model, cell, batch, device, loader=opts, precision=precision)
            _sync(device)
            dt = time.perf_counter() - t0
            out[f"{decode}/{precision}"] = {"images_per_s": len(cell) / dt, "n": len(cell), "batch": batch}
            preds[f"{decode}/{precision}"] = pred
    out["same_predictions_pil_vs_gpu_decode_fp32"] = bool(torch.equal(preds["pil/fp32"], preds["torchvision/fp32"]))
    return out


def pgd_policy(device, smoke: bool, tree: Path) -> dict:
    from robustune.attacks import create_attack
    from robustune.data.robustness_sets import corruption_cell
    from robustune.eval.robust import attack_outcomes
    from robustune.models import create_classifier

    model = create_classifier("vit_tiny32" if smoke else "vit_base_patch16_224", num_classes=1000).to(device)
    cell = corruption_cell(tree, "gaussian_noise", 3)
    attack = create_attack("pgd", model, eps=4 / 255, steps=10, alpha=1 / 255, seed=0)
    out, outcomes = {}, {}
    for precision in ("fp32", "bf16"):
        _sync(device)
        t0 = time.perf_counter()
        outcomes[precision] = attack_outcomes(model, cell, attack, 16 if smoke else 128, device, precision=precision)
        _sync(device)
        out[precision] = {"images_per_s": len(cell) / (time.perf_counter() - t0), "n": len(cell),
                          "robust_accuracy": outcomes[precision][1].float().mean().item()}
    out["bf16_robust_subset_of_fp32"] = bool(not (outcomes["bf16"][1] & ~outcomes["fp32"][1]).any())
    return out


def projections(results: dict) -> dict:
    rates = {k: v["images_per_s"] for k, v in results["presets"].items()}
    corr = results["corruptions"]
    rates["corruptions"] = max(v["images_per_s"] for k, v in corr.items() if isinstance(v, dict))
    rates["pgd"] = results["pgd"]["bf16"]["images_per_s"]
    return {name: {"hours": images / rates[src] / 3600, "images": images, "from": src}
            for name, (src, images) in EXPERIMENTS.items() if src in rates}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the figures here (default $OUT/gpu_check.json)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per preset (after one warm-up)")
    ap.add_argument("--images", type=int, default=5000, help="images of the synthetic ImageNet-C cell")
    ap.add_argument("--smoke", action="store_true", help="tiny everything on the CPU: checks the script runs")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}); nothing measured — run it on a GPU machine")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    steps, images = (1, 32) if args.smoke else (args.steps, args.images)
    results: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (smoke)",
                     "torch": torch.__version__, "presets": {}}
    t_start = time.perf_counter()
    results["presets"]["gfn_vit_b16_imagenet"] = preset_gfn(device, args.smoke, steps)
    for preset in ("fap_vit_b32", "erapt_vit_b32"):
        results["presets"][preset] = preset_clip(preset, device, args.smoke, steps)
    results["presets"]["det_gfn_vit_b16_coco"] = preset_det(device, args.smoke, steps)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tree = make_tree(Path(tmp), classes=min(1000, images), per_class=max(1, images // 1000),
                         size=32 if args.smoke else 224)
        results["corruptions"] = corruption_loaders(device, args.smoke, tree)
        results["pgd"] = pgd_policy(device, args.smoke, tree)
    results["projections"] = projections(results)
    results["seconds"] = time.perf_counter() - t_start
    _print(results)
    out = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return 0


def _print(r: dict) -> None:
    print(f"gpu_check on {r['device']}, torch {r['torch']}")
    for name, v in r["presets"].items():
        peak = f"{v['peak_gib']:.1f} GiB" if v["peak_gib"] is not None else "-"
        print(f"  preset {name:24s} {v['precision']:5s} batch {v['batch']:3d}  {v['s_per_step']:.3f} s/step  "
              f"{v['images_per_s']:8.1f} img/s  peak {peak}")
    for section in ("corruptions", "pgd"):
        for k, v in r[section].items():
            shown = f"{v['images_per_s']:.1f} img/s (n = {v['n']})" if isinstance(v, dict) else v
            print(f"  {section} {k:40s} {shown}")
    for k, v in r["projections"].items():
        print(f"  projected {k:26s} {v['hours']:8.2f} h  ({v['images']:,} images at the {v['from']} rate)")


if __name__ == "__main__":
    sys.exit(main())
