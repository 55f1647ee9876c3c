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


def compact_png(data: bytes, colors: int = 96, above: int = 40_000) -> bytes:
    """A palette PNG of ``data`` when that is smaller (plots have few colours); keeps reports small."""
    if len(data) <= above:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        small = img.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
        buf = io.BytesIO()
        small.save(buf, format="png", optimize=True)
    return buf.getvalue() if buf.tell() < len(data) else data


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return compact_png(buf.getvalue(), above=0)


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


def _family_of(corruption: str) -> str:
    from robustune.corruptions.registry import SUBSETS

    for family in ("noise", "blur", "weather", "digital"):
        if corruption in SUBSETS[family]:
            return family
    return "other"


def severity_curves(run: ModelRun) -> dict[str, list[tuple[int, float]]]:
    """"all" and each corruption family → [(severity, mean accuracy)], severity 0 = clean if stored."""
    by: dict[str, dict[int, list[float]]] = {}
    for cell in run.results.cells.values():
        if cell.suite == "corruptions" and cell.metric == "top1_accuracy":
            sev = int(cell.details["severity"])
            for group in ("all", _family_of(str(cell.details["corruption"]))):
                by.setdefault(group, {}).setdefault(sev, []).append(cell.value)
    clean = run.results.cells.get("clean")
    out = {}
    for group, sevs in by.items():
        pts = [(s, sum(v) / len(v)) for s, v in sorted(sevs.items())]
        out[group] = ([(0, clean.value)] if clean else []) + pts
    return out


def corruption_severity_figure(runs: list[ModelRun]) -> Figure | None:
    """Top-1 accuracy vs severity: the mean over all corruptions, then one panel per family."""
    curves = {run.name: severity_curves(run) for run in runs}
    groups = [g for g in ("all", "noise", "blur", "weather", "digital", "other")
              if any(g in c for c in curves.values())]
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(2.3 * len(groups) + 0.6, 3.0), sharey=True, squeeze=False)
    for ax, group in zip(axes[0], groups):
        for model, c in curves.items():
            if group in c:
                ax.plot(*zip(*[(s, 100 * a) for s, a in c[group]]), marker="o", ms=3, label=model)
        ax.set_title("mean of all corruptions" if group == "all" else group, fontsize=9)
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
        ax.set_xticks(range(0, 6))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy (%)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    return Figure("Accuracy vs corruption severity", _png(fig),
                  "mean over the corruptions of each family (ImageNet-C's noise / blur / weather / digital)")


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
            figs.append(Figure(png.stem.replace("_", " "), compact_png(png.read_bytes(), colors=128),
                               f"from {png}"))
    return figs
