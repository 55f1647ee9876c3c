"""A GPU check ready to run: paper presets at real size, the corruption suite's loaders, PGD under the policy.

Run on a CUDA machine (``scripts/gpu_check.sh`` prepares one without network and runs this):

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json

Without CUDA it prints one line and exits 0. Two CPU modes check the script; their numbers mean
nothing:
- ``--smoke`` runs every section with tiny models and a few images;
- ``--rehearse`` runs the real architectures, presets and precisions at batch 2 on a few images,
  to catch a missing module, a download attempt, or a shape only the real sizes reach, before the
  one-shot GPU run.

Each measurement is guarded: a failure is recorded under its name (error and last frames), the
others still run, ``failed`` lists the failures and the exit status is 1. The JSON is rewritten
after every measurement, so a run cut off by a time limit keeps what it measured.
``--sections`` picks a subset, for re-running what failed.

Sections (each figure is measured here, in this run; the output format is in docs/benchmarks.md):

1. ``presets``: each paper-scale preset (GFN ViT-B/16 ImageNet; FAP and ER-APT CLIP ViT-B/32 on
   FAP's recipe, ER-APT's own settings ours; gfn_det ViT-B/16 Faster R-CNN on COCO, a recipe of ours)
   for a few training steps at its real image size and batch, random
   weights (the time does not depend on them), under the preset's precision: s/step, images/s,
   peak GPU memory.
2. ``corruptions``: the corruption suite's loop (``robustune.eval.clean.predict``) on a synthetic
   ImageNet-C tree of 224 px JPEGs made here, ViT-B/16: PIL workers vs batched GPU decode, fp32
   vs bf16, images/s.
3. ``pgd``: PGD-10 (ε = 4/255) robust-accuracy loop on ViT-B/16 over ``--pgd-images`` images
   labelled by the model's own fp32 predictions (random weights are right on none), fp32 vs the
   bf16 policy (TF32 gradient steps, fp32 re-check): images/s, robust accuracy and whether the
   per-sample outcomes agree.
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
from dataclasses import dataclass
from torch.utils.data import Dataset, Subset

ROOT = Path(__file__).resolve().parents[1]
# Paper-scale experiments: images per epoch x epochs (or images evaluated), for the projections. GFN's
# 10 epochs on ImageNet-1k are the paper's; 16 shots x 10 epochs are FAP's recipe; 12 COCO epochs are ours.
EXPERIMENTS = {
    "gfn_imagenet_finetune": ("gfn_vit_b16_imagenet", 1_281_167 * 10),
    "fap_imagenet_16shot": ("fap_vit_b32", 16_000 * 10),
    "erapt_imagenet_16shot": ("erapt_vit_b32", 16_000 * 10),
    "gfn_det_coco": ("det_gfn_vit_b16_coco", 117_266 * 12),
    "imagenet_c_full": ("corruptions", 50_000 * 75),
    "pgd10_robustbench_5000": ("pgd", 5_000),
}


@dataclass(frozen=True)
class Mode:
    """``gpu`` (the real check), ``smoke`` (tiny models on the CPU) or ``rehearse`` (the real
    architectures, presets and precisions on the CPU, at batch 2 and a few images)."""

    smoke: bool = False
    rehearse: bool = False

    @property
    def gpu(self) -> bool:
        return not (self.smoke or self.rehearse)

    @property
    def real(self) -> bool:
        """The paper presets' architectures, image sizes and precisions."""
        return not self.smoke

    @property
    def name(self) -> str:
        return "smoke" if self.smoke else "rehearse" if self.rehearse else "gpu"

    def batch(self, preset_batch: int) -> int:
        return preset_batch if self.gpu else 2


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


def preset_gfn(device, mode: Mode, steps: int) -> dict:
    from robustune.methods import SetupContext, create_method
    from robustune.models import create_classifier

    cfg = _cfg("gfn_vit_b16_imagenet")
    name, classes, batch = ("vit_tiny32", 10, 8) if mode.smoke else \
        (cfg.model.name, 1000, mode.batch(cfg.data.batch_size))
    model = create_classifier(name, num_classes=classes)
    params = dict(cfg.method.params, similarity_source="head_weights", k=min(cfg.method.params["k"], classes - 1))
    params.pop("max_per_class", None)
    method = create_method(cfg.method.name, model, params, num_classes=classes).to(device).train()
    method.setup(SetupContext(train_set=None, device=device, seed=0))
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-4, momentum=0.9)
    size = model.input_size[-1]
    precision = cfg.train.precision if mode.real else "fp32"
    return _timed_steps(method, opt, _classifier_batch(batch, size, classes, device), device, precision, steps)


def preset_clip(preset: str, device, mode: Mode, steps: int) -> dict:
    from robustune.clip import CLIPClassifier, create_clip
    from robustune.methods import create_method

    cfg = _cfg(preset)
    # rehearse: 16 class names, not 1,000 (the text tower over 1,000 prompts takes minutes a step on a CPU)
    arch = "robustune-tiny-clip" if mode.smoke else cfg.model.name.split(":", 1)[1]
    classes = 1000 if mode.gpu else 16 if mode.rehearse else 10
    base = CLIPClassifier(create_clip(arch), [f"class {i}" for i in range(classes)], ["a photo of a {}."])
    params = dict(cfg.method.params)
    if mode.smoke and "depth" in params:
        params["depth"] = 2
    method = create_method(cfg.method.name, base, params, num_classes=classes).to(device).train()
    opt = torch.optim.SGD(method.trainable_parameters(), lr=1e-3, momentum=0.9)
    size = base.input_size[-1]
    precision = cfg.train.precision if mode.real else "fp32"
    batch = _classifier_batch(mode.batch(cfg.data.batch_size), size, classes, device)
    return _timed_steps(method, opt, batch, device, precision, steps)


def preset_det(device, mode: Mode, steps: int) -> dict:
    from robustune.methods import create_method
    from robustune.models.detectors import create_detector

    cfg = _cfg("det_gfn_vit_b16_coco")
    kwargs = dict(cfg.model.kwargs)
    backbone, classes, size, batch = ("vit_tiny32", 10, 64, 2) if mode.smoke else \
        (cfg.model.name.split(":", 1)[1], 80, int(kwargs["min_size"]), mode.batch(cfg.data.batch_size))
    if mode.smoke:
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
    precision = cfg.train.precision if mode.real else "fp32"
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


def corruption_loaders(device, mode: Mode, tree: Path) -> dict:
    from robustune.data.robustness_sets import corruption_cell
    from robustune.data.loading import LoaderOptions
    from robustune.eval.clean import predict
    from robustune.models import create_classifier

    model = create_classifier("vit_base_patch16_224" if mode.real else "vit_tiny32", num_classes=1000).to(device)
    cell = corruption_cell(tree, "gaussian_noise", 3)
    batch = 256 if mode.gpu else 4
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


def pgd_policy(device, mode: Mode, tree: Path, pgd_images: int) -> dict:
    from robustune.attacks import create_attack
    from robustune.data.robustness_sets import corruption_cell
    from robustune.eval.clean import predict
    from robustune.eval.robust import attack_outcomes
    from robustune.models import create_classifier

    model = create_classifier("vit_base_patch16_224" if mode.real else "vit_tiny32", num_classes=1000).to(device)
    cell = corruption_cell(tree, "gaussian_noise", 3)
    n = min(pgd_images, len(cell))
    # Random weights are right on no image; labelled by the model's own fp32 predictions every image
    # starts correct, so the robust accuracy measures what PGD flips and the policy check has points.
    clean_pred, _ = predict(model, Subset(cell, range(n)), 128 if mode.gpu else 4, device, precision="fp32")
    cell = _Relabelled(Subset(cell, range(n)), clean_pred.tolist())
    attack = create_attack("pgd", model, eps=4 / 255, steps=10, alpha=1 / 255, seed=0)
    out, outcomes = {}, {}
    for precision in ("fp32", "bf16"):
        _sync(device)
        t0 = time.perf_counter()
        outcomes[precision] = attack_outcomes(model, cell, attack, 128 if mode.gpu else 4, device, precision=precision)
        _sync(device)
        out[precision] = {"images_per_s": len(cell) / (time.perf_counter() - t0), "n": len(cell),
                          "robust_accuracy": outcomes[precision][1].float().mean().item()}
    out["bf16_robust_subset_of_fp32"] = bool(not (outcomes["bf16"][1] & ~outcomes["fp32"][1]).any())
    out["outcomes_agree"] = (outcomes["bf16"][1] == outcomes["fp32"][1]).float().mean().item()
    return out


class _Relabelled(Dataset):
    """``dataset``'s images with the given labels. The attribute is named ``dataset`` so the loaders
    see through it to the file dataset underneath (workers, uint8 transport), as they do for a Subset."""

    def __init__(self, dataset: Dataset, labels: list[int]):
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.dataset[i][0], self.labels[i]


def projections(results: dict) -> dict:
    """Projected hours of each paper experiment from the rates measured (sections that failed are left out)."""
    rates = {k: v["images_per_s"] for k, v in results.get("presets", {}).items() if "images_per_s" in v}
    corr = results.get("corruptions", {})
    measured = [v["images_per_s"] for v in corr.values() if isinstance(v, dict) and "images_per_s" in v]
    if measured:
        rates["corruptions"] = max(measured)
    if "images_per_s" in results.get("pgd", {}).get("bf16", {}):
        rates["pgd"] = results["pgd"]["bf16"]["images_per_s"]
    return {name: {"hours": images / rates[src] / 3600, "images": images, "from": src}
            for name, (src, images) in EXPERIMENTS.items() if src in rates}


SECTIONS = ("presets", "corruptions", "pgd")


def _guarded(results: dict, key: str, fn, *args) -> None:
    """Run one measurement; a failure is recorded (type, message, last frames) and the check goes on."""
    try:
        results[key] = fn(*args)
    except Exception as e:  # noqa: BLE001 -- one broken section must not cost the other figures
        import traceback

        tail = traceback.format_exc().strip().splitlines()[-12:]
        results[key] = {"error": f"{type(e).__name__}: {e}", "traceback": tail}
        print(f"gpu_check: {key} failed: {type(e).__name__}: {e}", flush=True)
    finally:
        if torch.cuda.is_available():  # what a measurement (or its out-of-memory failure) held goes back
            torch.cuda.empty_cache()


def _save(results: dict, out: Path | None) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))


def failures(results: dict) -> list[str]:
    """Names of the measurements that raised (``presets.<name>``, ``corruptions``, ``pgd``)."""
    bad = [f"presets.{k}" for k, v in results.get("presets", {}).items() if "error" in v]
    return bad + [k for k in ("corruptions", "pgd") if "error" in results.get(k, {})]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the figures here (default $OUT/gpu_check.json)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per preset (after one warm-up)")
    ap.add_argument("--images", type=int, default=5000, help="images of the synthetic ImageNet-C cell")
    ap.add_argument("--pgd-images", type=int, default=1000, help="images of that cell attacked by PGD-10")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--smoke", action="store_true", help="tiny everything on the CPU: checks the script runs")
    ap.add_argument("--rehearse", action="store_true",
                    help="on the CPU, the real architectures and presets (batch 2, one step, a few images): "
                         "checks what the GPU run will build, without a GPU")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    if args.smoke and args.rehearse:
        ap.error("--smoke and --rehearse exclude each other: pick one")
    if not torch.cuda.is_available() and not (args.smoke or args.rehearse):
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}); nothing measured — run it on a GPU machine")
        return 0
    mode = Mode(smoke=args.smoke, rehearse=args.rehearse)
    device = torch.device("cuda" if mode.gpu else "cpu")
    steps = args.steps if mode.gpu else 1
    images, pgd_images = (args.images, args.pgd_images) if mode.gpu else (32, 8)
    out = args.json or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None)
    results: dict = {"device": torch.cuda.get_device_name(0) if mode.gpu else f"cpu ({mode.name})",
                     "torch": torch.__version__, "mode": mode.name, "presets": {}}
    t_start = time.perf_counter()
    if "presets" in sections:
        runs = [("gfn_vit_b16_imagenet", preset_gfn), ("fap_vit_b32", preset_clip),
                ("erapt_vit_b32", preset_clip), ("det_gfn_vit_b16_coco", preset_det)]
        for name, fn in runs:
            args_ = (name, device, mode, steps) if fn is preset_clip else (device, mode, steps)
            _guarded(results["presets"], name, fn, *args_)
            _print_preset(name, results["presets"][name])
            _save(results, out)
    if "corruptions" in sections or "pgd" in sections:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            tree = make_tree(Path(tmp), classes=min(1000, images), per_class=max(1, images // 1000),
                             size=224 if mode.real else 32)
            runs = (("corruptions", corruption_loaders, ()), ("pgd", pgd_policy, (pgd_images,)))
            for section, fn, extra in runs:
                if section in sections:
                    _guarded(results, section, fn, device, mode, tree, *extra)
                    _print_section(section, results[section])
                    _save(results, out)
    results["projections"] = projections(results)
    results["seconds"] = time.perf_counter() - t_start
    results["failed"] = failures(results)
    for k, v in results["projections"].items():
        print(f"  projected {k:26s} {v['hours']:8.2f} h  ({v['images']:,} images at the {v['from']} rate)")
    print(f"gpu_check: {len(results['failed'])} failed {results['failed'] or ''} in {results['seconds']:.0f} s"
          + (f"; figures in {out}" if out else ""))
    _save(results, out)
    return 1 if results["failed"] else 0


def _print_preset(name: str, v: dict) -> None:
    if "error" in v:
        return
    peak = f"{v['peak_gib']:.1f} GiB" if v["peak_gib"] is not None else "-"
    print(f"  preset {name:24s} {v['precision']:5s} batch {v['batch']:3d}  {v['s_per_step']:.3f} s/step  "
          f"{v['images_per_s']:8.1f} img/s  peak {peak}", flush=True)


def _print_section(section: str, r: dict) -> None:
    if "error" in r:
        return
    for k, v in r.items():
        shown = f"{v['images_per_s']:.1f} img/s (n = {v['n']})" if isinstance(v, dict) else v
        print(f"  {section} {k:40s} {shown}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
