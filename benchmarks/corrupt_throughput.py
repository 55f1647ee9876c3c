"""Corruption generation throughput: 1 vs 2 worker processes on 224×224 images, and a cached re-run.

Run: ``.venv/bin/python benchmarks/corrupt_throughput.py [--quick] [--images N] [--workers 1,2]``

Source images are scikit-image's bundled photos (no download), centre-cropped to 224×224 and
flipped/rotated to make distinct images. Each configuration writes into a fresh folder; numba's
glass-blur kernels are compiled in the parent first so forked workers inherit them and no
configuration pays the compile. Printed side by side in one run: images/s and files/s per worker
count, the speed-up of 2 workers over 1, and the wall time of a re-run where every file exists
(only the existence checks remain), as a fraction of the fresh run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def source_images(n: int, size: int = 224) -> torch.Tensor:
    from skimage import data

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        try:
            img = getattr(data, name)()
        except Exception:  # some bundled images need a download on newer scikit-image
            continue
        h, w = img.shape[:2]
        s = min(h, w)
        crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        t = torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]
        photos.append(torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                                      antialias=True, align_corners=False)[0])
    if not photos:
        photos = [torch.rand(3, size, size, generator=torch.Generator().manual_seed(0))]
    out = []
    for i in range(n):
        x = photos[i % len(photos)]
        x = torch.rot90(x, k=(i // len(photos)) % 4, dims=(1, 2))
        out.append(x.flip(2) if (i // (4 * len(photos))) % 2 else x)
    return torch.stack(out).clamp(0, 1)


def warm_up(corruptions: list[str], severities: list[int]) -> None:
    from robustune.corruptions import corrupt_image

    img = np.zeros((32, 32, 3), np.uint8)
    for c in corruptions:
        for s in severities:
            corrupt_image(img, c, s, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="4 images, 4 corruptions, severity 3 (smoke check)")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--corruptions", default="common")
    ap.add_argument("--severities", default="1-5")
    args = ap.parse_args()
    from robustune.corruptions import corrupt_dataset, resolve_corruptions, resolve_severities
    from robustune.data.digits import TensorImageDataset

    n = 4 if args.quick else args.images
    corruptions = resolve_corruptions("gaussian_noise,glass_blur,zoom_blur,fog" if args.quick else args.corruptions)
    severities = resolve_severities("3" if args.quick else args.severities)
    ds = TensorImageDataset(source_images(n), [0] * n, ["photo"])
    files = n * len(corruptions) * len(severities)
    warm_up(corruptions, severities)
    print(f"{n} images of 224x224, {len(corruptions)} corruptions x {len(severities)} severities "
          f"= {files} files per run\n")
    print(f"{'workers':>7} {'seconds':>8} {'images/s':>9} {'files/s':>8}")
    rates, root = {}, Path(tempfile.mkdtemp(prefix="corrupt_bench_"))
    try:
        for w in [int(v) for v in args.workers.split(",")]:
            out = root / f"w{w}"
            t = time.perf_counter()
            corrupt_dataset(ds, out, corruptions, severities, workers=w)
            sec = time.perf_counter() - t
            rates[w] = (sec, out)
            print(f"{w:>7} {sec:>8.2f} {n / sec:>9.2f} {files / sec:>8.1f}")
        w0 = min(rates)
        for w, (sec, _) in rates.items():
            if w != w0:
                print(f"\nspeed-up {w} workers vs {w0}: {rates[w0][0] / sec:.2f}x")
        fresh, out = rates[w0]
        t = time.perf_counter()
        rep = corrupt_dataset(ds, out, corruptions, severities, workers=w0)
        cached = time.perf_counter() - t
        assert rep.written == 0
        print(f"cached re-run ({w0} worker): {cached * 1000:.1f} ms = {cached / fresh:.4f} of the fresh run "
              f"({cached / files * 1e6:.1f} µs per existing file)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
