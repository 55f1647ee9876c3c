"""Theorem-1 diagnostics of an evolved population (ER-APT, Jia et al. 2025).

Theorem 1: if the loss is L-Lipschitz in the perturbation and every δ of the ε-ball lies within η
of some member of the population 𝒫, then max_{δ∈Δε} ℓ(δ) ≤ max_{δ_i∈𝒫} ℓ(δ_i) + L·η. η is the
*covering radius* of 𝒫 in the ball, η = sup_{δ∈Δε} min_i ‖δ − δ_i‖₂. Two figures follow it:

- diversity: the mean pairwise L2 distance (2 / (P(P−1))) Σ_{i<j} ‖δ_i − δ_j‖₂;
- coverage: η̂ = max_{u ∈ U} min_i ‖u − δ_i‖₂ over M random points U of the ball (uniform in the
  L∞ cube, and clipped so x + u stays in [0,1] when ``clean`` is given). η̂ ≤ η (a sample only
  sees part of the ball), so it is an optimistic estimate; compare it across methods with the same
  M and seed. Both are also reported relative to the ball's half-diagonal ε·√d.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from robustune.files import atomic_path


@dataclass
class CoverageStats:
    """Per-image diagnostics (B,) and their batch means."""

    pairwise: torch.Tensor  # mean pairwise L2 distance of the population
    coverage: torch.Tensor  # η̂, estimated covering radius (L2)
    half_diagonal: float  # ε·√d, the largest possible L2 distance from the centre

    def logs(self, prefix: str = "pop_") -> dict[str, float]:
        return {f"{prefix}pairwise_l2": float(self.pairwise.mean()),
                f"{prefix}coverage_l2": float(self.coverage.mean()),
                f"{prefix}pairwise_rel": float(self.pairwise.mean()) / self.half_diagonal,
                f"{prefix}coverage_rel": float(self.coverage.mean()) / self.half_diagonal}


def mean_pairwise_distance(delta: torch.Tensor) -> torch.Tensor:
    """(B,) mean L2 distance over the P(P−1)/2 pairs of a (B, P, ...) population (0 if P = 1)."""
    b, p = delta.shape[:2]
    if p < 2:
        return delta.new_zeros(b)
    flat = delta.flatten(2).double()
    dist = torch.cdist(flat, flat)
    return (dist.sum((1, 2)) / (p * (p - 1))).to(delta.dtype)


def covering_radius(delta: torch.Tensor, eps: float, n_points: int = 256,
                    generator: torch.Generator | None = None, clean: torch.Tensor | None = None,
                    chunk: int = 64) -> torch.Tensor:
    """(B,) η̂ = max over ``n_points`` random u of the ε-ball of min_i ‖u − δ_i‖₂."""
    b = delta.shape[0]
    flat = delta.flatten(2).double()
    best = flat.new_zeros(b)
    for start in range(0, n_points, chunk):
        m = min(chunk, n_points - start)
        u = (torch.rand((b, m, *delta.shape[2:]), generator=generator, device=delta.device,
                        dtype=delta.dtype) * 2 - 1) * eps
        if clean is not None:
            x = clean.unsqueeze(1)
            u = (x + u).clamp(0, 1) - x
        nearest = torch.cdist(u.flatten(2).double(), flat).amin(2)
        best = torch.maximum(best, nearest.amax(1))
    return best.to(delta.dtype)


def population_coverage(delta: torch.Tensor, eps: float, n_points: int = 256,
                        generator: torch.Generator | None = None,
                        clean: torch.Tensor | None = None) -> CoverageStats:
    """Both Theorem-1 figures of a (B, P, C, H, W) population of perturbations."""
    d = math.prod(delta.shape[2:])
    return CoverageStats(mean_pairwise_distance(delta),
                         covering_radius(delta, eps, n_points, generator, clean), eps * math.sqrt(d))


DIAGNOSTIC_KEYS = ("pop_pairwise_rel", "pop_coverage_rel", "evo_gain")


def read_population_diagnostics(metrics_path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of the Theorem-1 figures logged in a run's ``metrics.jsonl``."""
    series: dict[str, list[tuple[int, float]]] = {k: [] for k in DIAGNOSTIC_KEYS}
    path = Path(metrics_path)
    if not path.is_file():
        return series
    for line in path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        for key in DIAGNOSTIC_KEYS:
            if key in row:
                series[key].append((int(row["step"]), float(row[key])))
    return series


def plot_population_diagnostics(run_dir: str | Path) -> Path | None:
    """``<run>/analysis/erapt_population.png``: diversity, coverage and evolution gain over steps.

    The report (:mod:`robustune.report`) shows every PNG of ``<run>/analysis``. Returns None when
    the run logged no diagnostics.
    """
    run_dir = Path(run_dir)
    series = read_population_diagnostics(run_dir / "metrics.jsonl")
    if not series["pop_coverage_rel"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for key, label in (("pop_pairwise_rel", "mean pairwise L2 / ε√d"), ("pop_coverage_rel", "η̂ / ε√d")):
        steps, values = zip(*series[key]) if series[key] else ((), ())
        ax1.plot(steps, values, marker=".", label=label)
    ax1.set_xlabel("step")
    ax1.set_title("Theorem 1: population diversity and coverage")
    ax1.legend(fontsize=8)
    if series["evo_gain"]:
        steps, values = zip(*series["evo_gain"])
        ax2.plot(steps, values, marker=".", color="C2")
    ax2.set_xlabel("step")
    ax2.set_title("best fitness − PGD start fitness")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    out = run_dir / "analysis" / "erapt_population.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.tight_layout()
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out
