"""Report figures as PNG bytes (matplotlib, Agg backend), plus the analysis plots found in run folders."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from robustune.report.tables import ModelRun, adversarial_series


@dataclass
class Figure:
    title: str
    png: bytes
    caption: str = ""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def accuracy_vs_eps_figure(runs: list[ModelRun]) -> Figure | None:
    """Accuracy vs ε, one line per (model, attack) from any ``pgd/...`` or ``adversarial/...`` cells."""
    series = adversarial_series(runs)
    if not any(len(pts) >= 1 for s in series.values() for pts in s.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, families in series.items():
        for family, pts in families.items():
            label = model if len(families) == 1 else f"{model} · {family}"
            ax.plot([e * 255 for e, _ in pts], [100 * a for _, a in pts], marker="o", label=label)
    ax.set_xlabel("perturbation radius ε (×1/255)")
    ax.set_ylabel("accuracy under attack (%)")
    ax.set_title("Adversarial robustness: accuracy vs ε")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Figure("Accuracy vs ε", _png(fig), "ε = 0 is the clean accuracy; points come from results.json cells.")


def corruption_severity_figure(runs: list[ModelRun]) -> Figure | None:
    """Mean top-1 accuracy over corruptions at each severity, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for run in runs:
        by_sev: dict[int, list[float]] = {}
        for cell in run.results.cells.values():
            if cell.suite == "corruptions" and cell.metric == "top1_accuracy":
                by_sev.setdefault(int(cell.details["severity"]), []).append(cell.value)
        if not by_sev:
            continue
        sev = sorted(by_sev)
        clean = run.results.cells.get("clean")
        xs = ([0] if clean else []) + sev
        ys = ([100 * clean.value] if clean else []) + [100 * sum(by_sev[s]) / len(by_sev[s]) for s in sev]
        ax.plot(xs, ys, marker="o", label=run.name)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("top-1 accuracy, mean over corruptions (%)")
    ax.set_title("Accuracy vs corruption severity")
    ax.set_xticks(range(0, 6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Figure("Accuracy vs corruption severity", _png(fig))


def analysis_figures(runs: list[ModelRun], extra_dirs: list[Path] | None = None) -> list[Figure]:
    """PNGs written by ``robustune analyze`` into ``<run>/analysis`` (or given folders)."""
    dirs: list[Path] = []
    for run in runs:
        for d in (run.folder / "analysis", run.folder.parent / "analysis"):
            if d.is_dir() and d not in dirs:
                dirs.append(d)
    dirs += [Path(d) for d in extra_dirs or [] if Path(d).is_dir()]
    figs = []
    for d in dirs:
        for png in sorted(d.glob("*.png")):
            figs.append(Figure(png.stem.replace("_", " "), png.read_bytes(), f"from {png}"))
    return figs
