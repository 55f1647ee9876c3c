"""PNG plots (matplotlib, Agg) of the analyses, each saved with the JSON of the data behind it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from robustune.analysis.error_ranks import ErrorRankHistogram
from robustune.analysis.intensity import IntensityHistogram
from robustune.files import atomic_path, write_json

RANK_BINS = [1, 2, 3, 4, 6, 11, 21, 51, 101, 201, 501, 1001]  # for many classes: 1, 2, 3, 4-5, 6-10, ...


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the suptitle; no title/label overlap
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _binned(h: ErrorRankHistogram) -> tuple[list[str], list[float]]:
    if h.num_classes <= 21:
        return [str(k) for k in range(1, h.num_classes)], h.fractions
    labels, values = [], []
    fr = h.fractions
    for lo, hi in zip(RANK_BINS[:-1], RANK_BINS[1:]):
        if lo >= h.num_classes:
            break
        labels.append(str(lo) if hi - lo == 1 else f"{lo}-{min(hi, h.num_classes) - 1}")
        values.append(sum(fr[lo - 1:min(hi, h.num_classes) - 1]))
    return labels, values


def plot_error_rank_histograms(hists: Sequence[ErrorRankHistogram], path: str | Path,
                               title: str = "Ranks of corruption-induced mistakes") -> Path:
    """One panel per corruption; bars per model: share of mistakes whose wrong class has rank k."""
    path = Path(path)
    corruptions = list(dict.fromkeys(h.corruption for h in hists))
    models = list(dict.fromkeys(h.model for h in hists))
    plt = _pyplot()
    rows, cols = _grid(len(corruptions))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, corruption in zip(axes.flat, corruptions):
        for j, model in enumerate(models):
            h = next((h for h in hists if h.corruption == corruption and h.model == model), None)
            if h is None:
                continue
            labels, values = _binned(h)
            x = np.arange(len(labels)) + (j - (len(models) - 1) / 2) * width
            ax.bar(x, [100 * v for v in values], width=width, label=f"{model} (n={h.n_mistakes})")
            ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=45 if len(labels) > 10 else 0)
        sev = next((h.severity for h in hists if h.corruption == corruption), None)
        ax.set_title(f"{corruption}" + (f" (severity {sev})" if sev else ""), fontsize=9)
        ax.set_xlabel("rank k of the wrong class", fontsize=8)
        ax.set_ylabel("% of mistakes", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(corruptions):]:
        ax.axis("off")
    fig.suptitle(title + " (k = 1: most similar class)", fontsize=11)
    write_json(path.with_suffix(".json"), {"plot": path.name, "description": title,
                                           "histograms": [{**dataclasses.asdict(h), "fractions": h.fractions,
                                                           "mean_rank": h.mean_rank} for h in hists]})
    return save_figure(fig, path)


def plot_similarity_heatmaps(sims: dict[str, torch.Tensor], classes: Sequence[str], path: str | Path,
                             title: str = "Inter-class cosine similarity") -> Path:
    """Heatmaps of (C, C) cosine-similarity matrices, models side by side, shared colour scale."""
    path = Path(path)
    plt = _pyplot()
    mats = {k: v.detach().float().cpu().numpy() for k, v in sims.items()}
    off = [m[~np.eye(len(m), dtype=bool)] for m in mats.values()]
    vmin, vmax = float(min(o.min() for o in off)), 1.0
    fig, axes = plt.subplots(1, len(mats), figsize=(5.2 * len(mats), 4.6), squeeze=False)
    show_names = len(classes) <= 30
    for ax, (name, m) in zip(axes.flat, mats.items()):
        im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=10)
        if show_names:
            ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel("class")
        ax.set_ylabel("class")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    fig.suptitle(title, fontsize=11)
    write_json(path.with_suffix(".json"), {"plot": path.name, "description": title, "classes": list(classes),
                                           "similarity": {k: v.tolist() for k, v in mats.items()}})
    return save_figure(fig, path)


def plot_intensity_histograms(clean: IntensityHistogram, corrupted: Sequence[IntensityHistogram],
                              path: str | Path, title: str = "Pixel intensities: clean vs corrupted") -> Path:
    """One panel per corruption, the clean histogram drawn in every panel for comparison."""
    path = Path(path)
    plt = _pyplot()
    rows, cols = _grid(len(corrupted))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    centers = lambda h: (np.array(h.edges[:-1]) + np.array(h.edges[1:])) / 2  # noqa: E731
    for ax, h in zip(axes.flat, corrupted):
        ax.plot(centers(clean), clean.density, color="black", lw=1.2, label="clean")
        ax.fill_between(centers(h), h.density, alpha=0.5, label=h.name)
        ax.set_title(h.name, fontsize=9)
        ax.set_xlabel("pixel intensity", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(corrupted):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    write_json(path.with_suffix(".json"), {"plot": path.name, "description": title,
                                           "clean": dataclasses.asdict(clean),
                                           "corrupted": [dataclasses.asdict(h) for h in corrupted]})
    return save_figure(fig, path)
