"""Generate corrupted copies of a dataset in the ImageNet-C layout, in parallel and resumably.

Layout: ``out/<corruption>/<severity>/<class>/<stem>.png`` (or ``.jpg`` with ``jpeg_quality``,
e.g. 85 for parity with the released ImageNet-C, which was saved as JPEG quality 85). Each
(image, corruption, severity) has its own seed derived from (seed, image key, corruption,
severity), so reruns, resumed runs and any number of workers give byte-identical files. Files
are written to a temporary name and renamed, so an interrupted run never leaves a half-written
image, and a rerun skips every file that exists. Image files skip the fsync of
:func:`robustune.files.atomic_path` (measured here: 7.3 vs 2.8 ms per 32 px PNG, i.e. +2 minutes on
the 27,000 files of digits-C): a killed process cannot leave a partial file either way, only a
power loss could (an empty file after a crash of the machine is treated as missing and redone). The manifest uses write_json. ``manifest.json`` records the configuration,
the class order and the source images that could not be read.

Generated data is *not* ImageNet-C: in-memory corruptions differ from the release (no JPEG step
unless asked, re-implemented motion blur / elastic transform).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from robustune.corruptions.registry import corrupt_image, ensure_min_size
from robustune.corruptions.sources import SourceImage, load_source
from robustune.files import read_json, write_json

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


@dataclass
class GenerationConfig:
    corruptions: list[str]
    severities: list[int]
    seed: int = 0
    jpeg_quality: int | None = None  # None: lossless PNG
    workers: int = 1

    @property
    def extension(self) -> str:
        return ".jpg" if self.jpeg_quality else ".png"


@dataclass
class GenerationReport:
    out_dir: str
    n_images: int
    written: int = 0
    existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    upsampled: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Source images fully processed per second (each image yields corruptions × severities files)."""
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")


def cell_seed(seed: int, key: str, corruption: str, severity: int) -> int:
    """A 32-bit seed that depends only on (seed, image key, corruption, severity)."""
    digest = hashlib.sha256(f"{seed}|{key}|{corruption}|{severity}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def output_path(out_dir: Path, source: SourceImage, corruption: str, severity: int, ext: str) -> Path:
    return out_dir / corruption / str(severity) / source.class_dir / f"{source.stem}{ext}"


def _save_image_atomic(pixels, path: Path, jpeg_quality: int | None) -> None:
    from PIL import Image

    from robustune.files import disk_full_named

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with disk_full_named(path, getattr(pixels, "nbytes", None)):  # one named error, not a traceback
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            img = Image.fromarray(pixels)
            if jpeg_quality:
                img.save(tmp, format="JPEG", quality=int(jpeg_quality))
            else:
                img.save(tmp, format="PNG")
            os.replace(tmp, path)  # atomic: readers see the old state or the whole new file
        finally:
            if tmp.exists():
                tmp.unlink()


def _process_image(source: SourceImage, cells: Sequence[tuple[str, int]], out_dir: str,
                   cfg: GenerationConfig) -> dict[str, Any]:
    """Worker: decode one source once, write its missing (corruption, severity) files."""
    try:
        image = load_source(source)
    except Exception as exc:  # a corrupt source is reported and skipped, never fatal
        return {"key": source.key, "error": f"{type(exc).__name__}: {exc}", "written": 0}
    image, upsampled = ensure_min_size(image)
    for corruption, severity in cells:
        pixels = corrupt_image(image, corruption, severity, cell_seed(cfg.seed, source.key, corruption, severity))
        _save_image_atomic(pixels, output_path(Path(out_dir), source, corruption, severity, cfg.extension),
                           cfg.jpeg_quality)
    return {"key": source.key, "error": None, "written": len(cells), "upsampled": upsampled,
            "shape": list(image.shape)}


def _missing_cells(source: SourceImage, out_dir: Path, cfg: GenerationConfig) -> list[tuple[str, int]]:
    def done(path: Path) -> bool:
        try:
            return path.stat().st_size > 0
        except FileNotFoundError:
            return False

    return [(c, s) for c in cfg.corruptions for s in cfg.severities
            if not done(output_path(out_dir, source, c, s, cfg.extension))]


def _run_tasks(tasks: list[tuple[SourceImage, list]], out_dir: Path, cfg: GenerationConfig,
               n_total: int, n_done: int) -> Iterable[dict[str, Any]]:
    bar = tqdm(total=n_total, initial=n_done, unit="img", desc="corrupting", smoothing=0.1)
    try:
        if cfg.workers <= 1:
            for source, cells in tasks:
                yield _process_image(source, cells, str(out_dir), cfg)
                bar.update(1)
            return
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            pending: set[Future] = set()
            queue = iter(tasks)
            for source, cells in queue:  # keep a bounded window of tasks in flight
                pending.add(pool.submit(_process_image, source, cells, str(out_dir), cfg))
                if len(pending) >= 4 * cfg.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        bar.update(1)
                        yield fut.result()
            for fut in pending:
                bar.update(1)
                yield fut.result()
    finally:
        bar.close()


def generate_corruptions(sources: list[SourceImage], classes: list[str], out_dir: str | os.PathLike,
                         cfg: GenerationConfig, source_info: dict[str, Any] | None = None) -> GenerationReport:
    """Write every missing (image, corruption, severity) file and ``manifest.json``; resumable."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tasks = [(s, cells) for s in sources if (cells := _missing_cells(s, out, cfg))]
    n_cells = len(cfg.corruptions) * len(cfg.severities)
    report = GenerationReport(out_dir=str(out), n_images=len(sources))
    report.existing = len(sources) * n_cells - sum(len(c) for _, c in tasks)
    if tasks:
        log.info("corrupting %d of %d images (%d corruptions x %d severities, %d workers) into %s",
                 len(tasks), len(sources), len(cfg.corruptions), len(cfg.severities), cfg.workers, out)
    for result in _run_tasks(tasks, out, cfg, len(sources), len(sources) - len(tasks)):
        if result["error"]:
            report.failed.append({"source": result["key"], "error": result["error"]})
            continue
        report.written += result["written"]
        report.upsampled += bool(result.get("upsampled"))
    report.seconds = time.perf_counter() - start
    if report.upsampled:
        log.warning("%d source image(s) smaller than 32 px were upsampled (bicubic) to a 32 px short "
                    "side before corrupting (imagecorruptions needs >= 32 px)", report.upsampled)
    if report.failed:
        log.warning("skipped %d unreadable source image(s) (first: %s: %s)", len(report.failed),
                    report.failed[0]["source"], report.failed[0]["error"])
    _write_manifest(out, cfg, classes, report, source_info or {})
    return report


def _write_manifest(out: Path, cfg: GenerationConfig, classes: list[str], report: GenerationReport,
                    source_info: dict[str, Any]) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        lib = f"imagecorruptions-imaug {version('imagecorruptions-imaug')}"
    except PackageNotFoundError:
        lib = "imagecorruptions (unknown version)"
    previous = read_json(out / MANIFEST) if (out / MANIFEST).exists() else {}
    same = all(previous.get(k) == v for k, v in
               {"seed": cfg.seed, "jpeg_quality": cfg.jpeg_quality, "source": source_info}.items())
    generated = {c: set(v) for c, v in previous.get("generated", {}).items()} if same else {}
    for c in cfg.corruptions:
        generated.setdefault(c, set()).update(cfg.severities)
    write_json(out / MANIFEST, {
        "generator": "robustune.corruptions", "library": lib, "source": source_info,
        "classes": classes, "corruptions": cfg.corruptions, "severities": cfg.severities,
        "generated": {c: sorted(s) for c, s in generated.items()}, "seed": cfg.seed,
        "jpeg_quality": cfg.jpeg_quality, "format": "JPEG" if cfg.jpeg_quality else "PNG",
        "layout": "<corruption>/<severity>/<class>/<file>", "n_images": report.n_images,
        "failed": report.failed, "upsampled_images": report.upsampled,
        "note": "generated in memory with imagecorruptions; not the released ImageNet-C",
    })


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    return read_json(path) if path.exists() else None
