"""The demo's report: a Markdown table, the data as JSON, and one accuracy-vs-ε plot."""

from __future__ import annotations

from pathlib import Path

from robustune.eval.results import EvalResults
from robustune.utils import write_json, write_text_atomic


def accuracy_vs_eps(results: EvalResults) -> list[tuple[float, float]]:
    """(ε, robust accuracy) points of the PGD cells, sorted by ε."""
    pts = [(c.details["threat_model"]["eps"], c.value) for c in results.cells.values()
           if c.suite == "pgd"]
    return sorted(pts)


def plot_accuracy_vs_eps(results: dict[str, EvalResults], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, res in results.items():
        pts = accuracy_vs_eps(res)
        ax.plot([e * 255 for e, _ in pts], [a * 100 for _, a in pts], marker="o", label=name)
    ax.set_xlabel("L∞ radius ε (×1/255)")
    ax.set_ylabel("PGD robust accuracy (%)")
    ax.set_title("Robust accuracy vs ε (digits test split)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(results: dict[str, EvalResults]) -> str:
    keys: list[str] = []
    for res in results.values():
        keys += [k for k in res.cells if k not in keys]
    header = "| model | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    rows = []
    for name, res in results.items():
        best = {k: max(r.cells[k].value for r in results.values() if k in r.cells) for k in keys}
        cells = []
        for k in keys:
            if k not in res.cells:
                cells.append("–")
                continue
            v = res.cells[k].value
            cells.append(f"**{100 * v:.1f}**" if v == best[k] and len(results) > 1 else f"{100 * v:.1f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows) + "\n"


def write_demo_report(results: dict[str, EvalResults], out: Path, runs: dict[str, Path]) -> Path:
    out = Path(out)
    plot = plot_accuracy_vs_eps(results, out / "accuracy_vs_eps.png")
    first = next(iter(results.values()))
    text = (
        "# robustune demo — digits\n\n"
        f"Dataset: {first.dataset.get('name')} / {first.dataset.get('split')}, "
        f"{first.dataset.get('n_images')} images. Accuracy in %; best per column in bold. "
        "PGD: L∞, random start, step 2.5·ε/steps, CE loss.\n\n"
        + _table(results)
        + f"\n![accuracy vs eps]({plot.name})\n\n"
        + "Run folders:\n\n" + "".join(f"- {k}: `{v}`\n" for k, v in runs.items())
    )
    write_text_atomic(out / "report.md", text)
    write_json(out / "report.json", {"models": {k: v.to_dict() for k, v in results.items()},
                                     "runs": {k: str(v) for k, v in runs.items()}})
    return out / "report.md"
