"""Seconds per detection training step: ``gfn_det`` and ``det_adv`` vs plain ``det_finetune``.

Run: ``.venv/bin/python benchmarks/det_step_cost.py [--quick] [--steps K] [--backbone NAME]``

Same detector, same batch, methods interleaved step by step (so a change in machine load hits all
of them alike); one warm-up step, then the median of ``K`` steps. A step is ``training_step`` +
backward + AdamW update, as in the engine. Default: the digits preset's tiny Faster R-CNN
(``configs/det_frcnn_digits.yaml``: vit_tiny32 backbone, 64 px canvases, batch 16).
``--backbone vit_base_patch16_224 --size 320 --batch 2`` times a ViT-B/16 detector instead
(random init: timing does not depend on the weights). Target (issue 14): gfn_det ≤ 2× det_finetune
(the extra is one forward and one input-only backward).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

DIGITS_KWARGS = dict(fpn_channels=32, box_head_dim=128, pyramid_scales=(2, 1, 0.5), rpn_batch_size_per_image=32,
                     box_batch_size_per_image=32, rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=100,
                     rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50, box_detections_per_img=20)
METHODS = {"det_finetune": {}, "det_adv": {"eta": 0.02},
           "gfn_det": {"eta": 0.02, "k": 3, "similarity_source": "head_weights"}}


def build(backbone: str, size: int):
    from robustune.methods import create_method
    from robustune.models.detectors import create_detector

    torch.manual_seed(0)
    kwargs = DIGITS_KWARGS if backbone == "vit_tiny32" else {}
    det = create_detector(backbone, 10, min_size=size, max_size=size, **kwargs)
    out = {}
    for name, params in METHODS.items():
        m = create_method(name, det, params, num_classes=10).train()
        if name == "gfn_det":
            m.ranks.copy_(torch.stack([torch.roll(torch.arange(10), -c) for c in range(10)]).argsort(1).argsort(1))
        out[name] = (m, torch.optim.AdamW(m.trainable_parameters(), lr=1e-5))
    return out


def batch(n: int, size: int):
    from robustune.data import create_dataset
    from robustune.data.detection import detection_collate

    ds = create_dataset("digits_det", "train", n_images=n, canvas=64)
    images, targets = detection_collate([ds[i] for i in range(n)])
    if size != 64:
        scale = size / 64
        images = [torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear")[0] for x in images]
        targets = [{**t, "boxes": t["boxes"] * scale} for t in targets]
    return images, targets


def step(method, opt, images, targets, k: int) -> tuple[float, float]:
    from robustune.methods import StepContext

    ctx = StepContext(epoch=0, step=k, generator=torch.Generator().manual_seed(k))
    torch.manual_seed(k)  # the same RPN / ROI sampling for every method
    t0, c0 = time.perf_counter(), time.process_time()
    out = method.training_step(images, targets, ctx)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 steps at batch 4 (smoke check)")
    ap.add_argument("--backbone", default="vit_tiny32")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    steps, n = (2, 4) if args.quick else (args.steps, args.batch)
    methods = build(args.backbone, args.size)
    images, targets = batch(n, args.size)
    wall: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for k in range(steps + 1):  # step 0 is the warm-up
        for name, (m, opt) in methods.items():
            w, c = step(m, opt, images, targets, k)
            if k:
                wall[name].append(w)
                cpu[name].append(c)
    print(f"{args.backbone} Faster R-CNN, {args.size} px, batch {n}, {torch.get_num_threads()} threads, "
          f"median of {steps} steps (methods interleaved); process CPU time is the steadier measure "
          "on a loaded machine")
    ref_w, ref_c = statistics.median(wall["det_finetune"]), statistics.median(cpu["det_finetune"])
    for name in methods:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:12s} wall {w:7.3f} s/step ({w / ref_w:4.2f}x)   CPU {c:7.3f} s/step ({c / ref_c:4.2f}x "
              f"det_finetune)  wall min {min(wall[name]):.3f} max {max(wall[name]):.3f}")


if __name__ == "__main__":
    main()
