"""Corrupt a whole dataset: a classification set or an image folder in the ImageNet-C layout, a
detection set in the Michaelis et al. layout, and a registered set generated once and reused."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from robustune.corruptions.detection import corrupt_detection_dataset
from robustune.corruptions.generate import GenerationConfig, GenerationReport, generate_corruptions, read_manifest
from robustune.corruptions.registry import resolve_corruptions, resolve_severities
from robustune.corruptions.sources import dataset_sources, folder_sources

log = logging.getLogger(__name__)


def _manifest_covers(manifest: dict[str, Any] | None, cfg: GenerationConfig, source_info: dict) -> bool:
    if not manifest or manifest.get("seed") != cfg.seed or manifest.get("jpeg_quality") != cfg.jpeg_quality \
            or manifest.get("source") != source_info:
        return False
    generated = manifest.get("generated", {})
    return all(set(cfg.severities) <= set(generated.get(c, [])) for c in cfg.corruptions)


def corrupt_dataset(dataset_or_folder: Any, out_dir: str | os.PathLike,
                    corruptions: str | Sequence[str] = "common", severities: str | Sequence[int] = "1-5",
                    *, seed: int = 0, jpeg_quality: int | None = None, workers: int = 1,
                    classes: list[str] | None = None,
                    source_info: dict[str, Any] | None = None) -> GenerationReport:
    """Corrupt a ``Dataset`` (float [0,1] CHW items) or an image folder ``root/<class>/<file>``.

    A detection dataset (``is_detection``) is written in the Michaelis et al. layout with its boxes
    (:mod:`robustune.corruptions.detection`).
    """
    if getattr(dataset_or_folder, "is_detection", False):
        return corrupt_detection_dataset(dataset_or_folder, out_dir, corruptions, severities, seed=seed,
                                         jpeg_quality=jpeg_quality, workers=workers, source_info=source_info)
    cfg = GenerationConfig(resolve_corruptions(corruptions), resolve_severities(severities), seed,
                           jpeg_quality, max(1, int(workers)))
    if isinstance(dataset_or_folder, (str, os.PathLike)):
        sources, found = folder_sources(dataset_or_folder)
        info = source_info or {"folder": str(Path(dataset_or_folder).resolve())}
    else:
        sources, found = dataset_sources(dataset_or_folder, classes)
        info = source_info or {"dataset": type(dataset_or_folder).__name__, "n_images": len(sources)}
    return generate_corruptions(sources, found, out_dir, cfg, info)


def ensure_corrupted_dataset(dataset_name: str, out_dir: str | os.PathLike,
                             corruptions: str | Sequence[str] = "common",
                             severities: str | Sequence[int] = "1-5", *, split: str = "test",
                             seed: int = 0, jpeg_quality: int | None = None, workers: int = 1,
                             **dataset_kwargs: Any) -> Path:
    """Generate ``<dataset_name>-C`` once; a no-op (manifest check only) when already complete.

    Example: ``ensure_corrupted_dataset("digits", "runs/demo/digits-c")`` for the built-in digits.
    """
    cfg = GenerationConfig(resolve_corruptions(corruptions), resolve_severities(severities), seed,
                           jpeg_quality, workers)
    info = {"dataset": dataset_name, "split": split,
            **{k: v for k, v in dataset_kwargs.items() if isinstance(v, (str, int, float, bool))}}
    if _manifest_covers(read_manifest(out_dir), cfg, info):
        log.info("corrupted %s/%s already complete in %s", dataset_name, split, out_dir)
        return Path(out_dir)
    from robustune.data import create_dataset

    dataset = create_dataset(dataset_name, split, **dataset_kwargs)
    corrupt_dataset(dataset, out_dir, cfg.corruptions, cfg.severities, seed=seed,
                    jpeg_quality=jpeg_quality, workers=workers, source_info=info)
    return Path(out_dir)
