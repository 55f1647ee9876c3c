"""``robustune analyze``: the GFN Sec. 3.1 analyses for one or two trained runs on a corrupted set.

The corrupted set must be one written by ``robustune corrupt`` from a registered dataset (its
``manifest.json`` names the dataset and split; file stems are the source indices), so every
corrupted image is matched with its clean original.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset

from robustune.analysis.error_ranks import ErrorRankHistogram, corruption_error_ranks, summarize_error_ranks
from robustune.analysis.intensity import intensity_histogram
from robustune.analysis.plots import (
    plot_error_rank_histograms,
    plot_intensity_histograms,
    plot_similarity_heatmaps,
)
from robustune.data.robustness_sets import available_cells, corruption_folder
from robustune.eval.clean import predict
from robustune.files import write_json

log = logging.getLogger(__name__)


def aligned_corrupted(root: Path, corruption: str, severity: int, classes: list[str],
                      n_source: int) -> tuple[Dataset, torch.Tensor]:
    """The corrupted cell and, per corrupted image, the index of its clean source image."""
    ds = corruption_folder(root, corruption, severity, classes=classes)
    try:
        index = torch.tensor([int(Path(p).stem) for p, _ in ds.samples])
    except ValueError as exc:
        raise ValueError(f"{root} was not generated from a registered dataset (file stems are not "
                         "source indices); generate it with `robustune corrupt DATASET`") from exc
    if int(index.max()) >= n_source:
        raise ValueError(f"{root} holds source index {int(index.max())} but the clean split has {n_source} images")
    return ds, index


def stack_images(ds: Dataset, limit: int | None = None) -> torch.Tensor:
    n = len(ds) if limit is None else min(limit, len(ds))
    return torch.stack([ds[i][0] for i in range(n)])


def model_similarity(model, cfg, classes: list[str]) -> torch.Tensor:
    """The model's class similarity (GFN Eq. 4: cosine of class-mean pre-logit features on train data)."""
    from robustune.data import create_dataset
    from robustune.data.splits import dataset_options, model_input_options
    from robustune.gfn.similarity import class_similarity

    train = create_dataset(cfg.data.name, cfg.data.train_split, **dataset_options(cfg.data),
                           **model_input_options(model))
    try:
        return class_similarity(model, train, len(classes), source="features")
    except (TypeError, ValueError) as exc:  # no pre-logit features: the cheap head-weight proxy
        log.warning("feature similarity unavailable (%s); using classifier head weights", exc)
        return class_similarity(model, None, len(classes), source="head_weights")


def analyze_runs(run_dirs: Sequence[str | Path], corruption_root: str | Path, out_dir: str | Path, *,
                 corruptions: str | Sequence[str] = "common", severity: int = 3, split: str | None = None,
                 max_images_intensity: int = 500, shared_similarity: bool = False) -> list[Path]:
    """Error-rank histograms, similarity heatmaps (side by side) and intensity histograms; returns PNG paths.

    ``shared_similarity``: rank every model's mistakes by the first run's class similarity (e.g.
    the pre-trained model, as in GFN) instead of each model's own.
    """
    from robustune.config import load_config
    from robustune.corruptions import resolve_corruptions
    from robustune.corruptions.generate import read_manifest
    from robustune.runs.loading import load_run_model

    root, out = Path(corruption_root), Path(out_dir)
    if not 1 <= len(run_dirs) <= 4:
        raise ValueError("analyze takes one to four run folders")
    present = available_cells(root)
    names = [c for c in resolve_corruptions(corruptions) if severity in present.get(c, [])]
    if not names:
        raise FileNotFoundError(f"no selected corruption at severity {severity} under {root}")
    hists: list[ErrorRankHistogram] = []
    sims: dict[str, torch.Tensor] = {}
    clean_ds = classes = None
    source = ((read_manifest(root) or {}).get("source") or {})
    for run in map(Path, run_dirs):
        cfg = load_config(run / "config.yaml")
        run_split = split or cfg.data.test_split
        if source.get("split") and source["split"] != run_split:
            raise ValueError(f"{root} was generated from the {source['split']!r} split but {run} is analysed "
                             f"on {run_split!r}; pass --split {source['split']} (or regenerate the set)")
        model, clean_ds, classes, _ = load_run_model(cfg, run, run_split)
        label = cfg.name if cfg.name not in sims else f"{cfg.name} ({run.name})"
        sims[label] = model_similarity(model, cfg, classes)
        from robustune.gfn.similarity import neighbor_ranks

        ranked_by = next(iter(sims)) if shared_similarity else label
        ranks = neighbor_ranks(sims[ranked_by])
        clean_pred, labels = predict(model, clean_ds)
        for c in names:
            ds, index = aligned_corrupted(root, c, severity, classes, len(clean_ds))
            pred, y = predict(model, ds)
            if not torch.equal(y, labels[index]):
                raise ValueError(f"labels of {root}/{c} do not match the clean {run_split!r} split")
            hists.append(corruption_error_ranks(clean_pred[index], pred, y, ranks, c, severity, label))
            hists[-1].extra["ranked_by_similarity_of"] = ranked_by
    write_json(out / "error_rank_summary.json", summarize_error_ranks(hists))
    written = [plot_error_rank_histograms(hists, out / "error_ranks.png"),
               plot_similarity_heatmaps(sims, classes, out / "similarity_heatmaps.png")]
    clean_h = intensity_histogram(stack_images(clean_ds, max_images_intensity), "clean")
    corr_h = [intensity_histogram(stack_images(corruption_folder(root, c, severity, classes=classes),
                                               max_images_intensity), f"{c} (s{severity})") for c in names]
    written.append(plot_intensity_histograms(clean_h, corr_h, out / "pixel_intensity.png"))
    log.info("wrote %d analysis plots (+ JSON data) into %s", len(written), out)
    return written
