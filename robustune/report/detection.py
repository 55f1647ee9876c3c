"""Detectors in reports: COCO mAP side by side, mAP per corruption, mAP vs severity, images with boxes.

Hooked into :func:`robustune.report.robustness.write_report` by one call: runs whose cells are
detection cells (metric ``mAP`` / ``mPC`` / ``rPC``) are shown here and kept out of the classifier
tables. Values are the stored cells, never recomputed; the per-corruption table averages the stored
severity cells and says so.
"""

from __future__ import annotations

from pathlib import Path

from robustune.report.plots import Figure, _png, _pyplot
from robustune.report.tables import Column, ModelRun, Table, _table

DETECTION_METRICS = {"mAP", "AP50", "AP75", "APs", "APm", "APl", "mPC", "rPC"}
HEADLINE = [("clean", "clean mAP (%)"), ("clean/AP50", "AP50 (%)"), ("clean/AP75", "AP75 (%)"),
            ("clean/APs", "APs (%)"), ("clean/APm", "APm (%)"), ("clean/APl", "APl (%)"),
            ("corruptions/mPC", "mPC (%)"), ("corruptions/rPC", "rPC (%)"),
            ("foggy_cityscapes", "Foggy-Cityscapes mAP (%)"), ("rtts", "RTTS mAP (%)"),
            ("exdark", "ExDark mAP (%)")]


def is_detection_run(run: ModelRun) -> bool:
    return any(c.metric in DETECTION_METRICS for c in run.results.cells.values())


def detection_tables(runs: list[ModelRun]) -> list[Table]:
    if not runs:
        return []
    present = {k for r in runs for k in r.results.cells}
    cols = [Column(k, t, "mAP", True) for k, t in HEADLINE if k in present]
    tables = [_table("Detection (COCO mAP, pycocotools)", runs, cols,
                     "mAP = AP@[.5:.95]; mPC = mean over corruptions of the mean mAP over severities; "
                     "rPC = mPC / clean mAP (Michaelis et al. 2019).")]
    tables += [t for t in (_per_corruption(runs), _foggy_per_beta(runs)) if t is not None]
    return tables


def _foggy_per_beta(runs: list[ModelRun]) -> Table | None:
    """Foggy-Cityscapes mAP and AP50 at each fog level β and their mean (the stored cells)."""
    present = {k: c for r in runs for k, c in r.results.cells.items() if c.suite == "foggy_cityscapes"}
    betas = sorted({c.details["beta"] for c in present.values() if "beta" in c.details})
    if not betas:
        return None
    keys = [(f"foggy_cityscapes/beta={b}", f"mAP β={b}") for b in betas] + [("foggy_cityscapes", "mAP mean")]
    keys += [(f"foggy_cityscapes/beta={b}/AP50", f"AP50 β={b}") for b in betas]
    keys += [("foggy_cityscapes/AP50", "AP50 mean")]
    cols = [Column(k, t, present[k].metric, True) for k, t in keys if k in present]
    return _table("Foggy-Cityscapes: mAP per fog level β (%, pycocotools)", runs, cols,
                  "Trained on clean Cityscapes (GFN Sec. 4.3). The mean over β (equal weights) is our reading "
                  "of the paper's single Foggy-Cityscapes number.")


def _per_corruption(runs: list[ModelRun]) -> Table | None:
    from robustune.eval.results import Cell

    rows: dict[str, dict[str, Cell]] = {}
    names: list[str] = []
    for run in runs:
        by: dict[str, list[float]] = {}
        for cell in run.results.cells.values():
            if cell.suite == "corruptions" and cell.metric == "mAP":
                by.setdefault(cell.details["corruption"], []).append(cell.value)
        rows[run.name] = {c: Cell(key=c, suite="corruptions", metric="mAP", value=sum(v) / len(v), n=len(v))
                          for c, v in by.items()}
        names += [c for c in by if c not in names]
    if not names:
        return None
    table = Table("Detection mAP per corruption (%, mean over the stored severities)",
                  [Column(c, c, "mAP", True) for c in names], rows)
    return table.mark_best()


def map_vs_severity_figure(runs: list[ModelRun]) -> Figure | None:
    """Mean mAP over corruptions at each severity (0 = clean), one line per detector."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for run in runs:
        by: dict[int, list[float]] = {}
        for cell in run.results.cells.values():
            if cell.suite == "corruptions" and cell.metric == "mAP":
                by.setdefault(int(cell.details["severity"]), []).append(cell.value)
        clean = run.results.cells.get("clean")
        xs = ([0] if clean else []) + sorted(by)
        ys = ([100 * clean.value] if clean else []) + [100 * sum(by[s]) / len(by[s]) for s in sorted(by)]
        if len(xs) < 2:
            continue
        ax.plot(xs, ys, marker="o", label=run.name)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("mAP, mean over corruptions (%)")
    ax.set_title("Detection: mAP vs corruption severity")
    ax.set_xticks(range(0, 6))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return Figure("mAP vs corruption severity", _png(fig))


def detection_sections(runs: list[ModelRun]) -> dict[str, list[Figure]]:
    """The mAP-vs-severity plot and each detector's images with boxes (from its eval folder)."""
    if not runs:
        return {}
    figures = [f for f in [map_vs_severity_figure(runs)] if f]
    for run in runs:
        clean = run.results.cells.get("clean")
        rel = clean.details.get("figure") if clean is not None else None
        path = run.folder / rel if rel else None
        if path is not None and Path(path).is_file():
            figures.append(Figure(f"{run.name}: detections on clean images", Path(path).read_bytes(),
                                  "green: ground truth; red: predictions with score ≥ 0.5"))
    return {"Object detection": figures}


def split_runs(runs: list[ModelRun]) -> tuple[list[ModelRun], list[ModelRun]]:
    """(classifier runs, detector runs)."""
    det = [r for r in runs if is_detection_run(r)]
    return [r for r in runs if r not in det], det
