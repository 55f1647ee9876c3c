"""Comparison tables built from several models' ``results.json`` (data only; renderers format them).

Values are never recomputed: a table entry is the stored cell (its value, metric, n, CI). The one
derived table, accuracy per corruption averaged over severities, says so in its title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from robustune.eval.results import Cell, EvalResults

# Metrics stored as fractions in [0, 1] and shown as percentages.
FRACTION_METRICS = {"top1_accuracy", "robust_accuracy", "mean_corruption_accuracy", "flip_probability",
                    "accuracy", "clean_accuracy",
                    "mAP", "AP50", "AP75", "APs", "APm", "APl", "mPC", "rPC"}  # detection (report/detection.py)
LOWER_IS_BETTER = {"mCE", "relative_mCE", "CE", "mFR", "mT5D", "flip_probability", "error",
                   "unnormalized_mCE", "unnormalized_CE"}


@dataclass
class ModelRun:
    name: str
    results: EvalResults
    path: Path  # the results.json

    @property
    def folder(self) -> Path:
        return self.path.parent


def _results_file(path: Path) -> Path:
    for candidate in (path, path / "results.json", path / "eval" / "results.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no results.json at {str(path)!r} (nor in {path}/ or {path}/eval/); "
                            "run `robustune eval RUN` first")


def load_runs(paths: Sequence[str | Path]) -> list[ModelRun]:
    """One :class:`ModelRun` per path (results.json, an eval folder or a run folder), unique names."""
    runs: list[ModelRun] = []
    for p in paths:
        file = _results_file(Path(p))
        res = EvalResults.load(file)
        base = str(res.model.get("run_name") or res.model.get("name") or Path(p).name)
        name, k = base, 2
        while any(r.name == name for r in runs):
            name, k = f"{base} ({k})", k + 1
        runs.append(ModelRun(name, res, file))
    if not runs:
        raise ValueError("no results to report")
    return runs


@dataclass
class Column:
    key: str  # a cell key
    title: str
    metric: str
    higher_is_better: bool


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: dict[str, dict[str, Cell]]  # model name -> column key -> cell
    note: str = ""
    best: dict[str, set[str]] = field(default_factory=dict)  # column key -> best model names

    def mark_best(self) -> "Table":
        for col in self.columns:
            vals = {m: r[col.key].value for m, r in self.rows.items() if col.key in r}
            if len(vals) < 2:
                continue
            target = max(vals.values()) if col.higher_is_better else min(vals.values())
            self.best[col.key] = {m for m, v in vals.items() if abs(v - target) < 1e-12}
        return self


def is_fraction(metric: str) -> bool:
    return metric in FRACTION_METRICS


def format_value(cell: Cell) -> str:
    """Percent with two decimals: fractions are ×100, mCE-style numbers are already percentages."""
    return f"{100 * cell.value:.2f}" if is_fraction(cell.metric) else f"{cell.value:.2f}"


def _column(key: str, cell: Cell, title: str | None = None) -> Column:
    metric = cell.metric
    return Column(key, title or key, metric, metric not in LOWER_IS_BETTER)


def _keys(runs: list[ModelRun], predicate) -> list[tuple[str, Cell]]:
    seen: dict[str, Cell] = {}
    for run in runs:
        for key, cell in run.results.cells.items():
            if key not in seen and predicate(key, cell):
                seen[key] = cell
    return list(seen.items())


def _table(title: str, runs: list[ModelRun], cols: list[Column], note: str = "") -> Table:
    rows = {r.name: {c.key: r.results.cells[c.key] for c in cols if c.key in r.results.cells} for r in runs}
    return Table(title, cols, rows, note).mark_best()


SUMMARY_TITLES = {
    "clean": "clean top-1 (%)",
    "corruptions/mean_corruption_accuracy": "mean corruption accuracy (%)",
    "corruptions/mCE": "mCE (%) ↓",
    "corruptions/relative_mCE": "relative mCE (%) ↓",
    "imagenet-a": "ImageNet-A top-1 (%)",
    "imagenet-r": "ImageNet-R top-1 (%)",
    "imagenet-p/mFR": "mFR (%) ↓",
    "imagenet-p/mT5D": "mT5D (%) ↓",
}


def summary_table(runs: list[ModelRun]) -> Table:
    """Clean, corruption (mean accuracy, mCE, relative mCE), OOD and adversarial headline numbers."""
    cols = [_column(k, c, SUMMARY_TITLES[k]) for k, c in _keys(runs, lambda k, c: k in SUMMARY_TITLES)]
    cols.sort(key=lambda c: list(SUMMARY_TITLES).index(c.key))
    cols += [_column(k, c, adversarial_title(k, c)) for k, c in _keys(runs, lambda k, c: is_adversarial(k, c))]
    normalizers = sorted({str(c.details.get("normalizer")) for r in runs for k, c in r.results.cells.items()
                          if k == "corruptions/mCE"})
    note = f"mCE normalised by: {', '.join(normalizers)}." if normalizers else ""
    return _table("Summary", runs, cols, note)


def corruption_ce_table(runs: list[ModelRun]) -> Table | None:
    cols = [_column(k, c, k.split("/")[-1]) for k, c in _keys(runs, lambda k, c: k.startswith("corruptions/CE/"))]
    if not cols:
        return None
    return _table("Corruption error per corruption (CE, %, lower is better)", runs, cols)


def corruption_accuracy_table(runs: list[ModelRun]) -> Table | None:
    """Top-1 accuracy per (corruption, severity) cell as stored, one column per cell."""
    cols = [_column(k, c, "/".join(k.split("/")[1:])) for k, c in
            _keys(runs, lambda k, c: c.suite == "corruptions" and c.metric == "top1_accuracy")]
    if not cols:
        return None
    return _table("Top-1 accuracy per corruption / severity (%)", runs, cols)


def flip_probability_table(runs: list[ModelRun]) -> Table | None:
    cols = [_column(k, c, c.details.get("perturbation", k)) for k, c in
            _keys(runs, lambda k, c: c.suite == "imagenet-p" and c.metric == "flip_probability")]
    if not cols:
        return None
    return _table("ImageNet-P flip probability per perturbation (%, lower is better)", runs, cols)


def is_adversarial(key: str, cell: Cell) -> bool:
    return key.startswith(("pgd/", "adversarial/")) and cell.metric.endswith("accuracy")


def adversarial_title(key: str, cell: Cell) -> str:
    """``pgd/Linf/eps=8/255/steps=10`` → ``PGD-10 Linf ε=8/255 (%)``; other keys keep their parts."""
    parts = key.split("/")
    eps = re.search(r"eps=([0-9.]+(?:/[0-9.]+)?)", key)
    steps = re.search(r"steps=(\d+)", key)
    if parts[0] == "pgd" and eps:
        return f"PGD-{steps.group(1) if steps else '?'} {parts[1]} ε={eps.group(1)} (%)"
    rest = [p for p in parts[1:] if not p.startswith("eps=") and not p.replace(".", "").isdigit()]
    return " ".join(rest + ([f"ε={eps.group(1)}"] if eps else [])) + " (%)"


def parse_eps(key: str, cell: Cell) -> float | None:
    """ε of an adversarial cell: from its threat model, else from ``eps=8/255`` in the key."""
    threat = cell.details.get("threat_model") or {}
    if isinstance(threat.get("eps"), (int, float)):
        return float(threat["eps"])
    if isinstance(cell.details.get("eps"), (int, float)):
        return float(cell.details["eps"])
    m = re.search(r"eps=([0-9.]+)(?:/([0-9.]+))?", key)
    if not m:
        return None
    return float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0)


def attack_family(key: str) -> str:
    """The series an adversarial cell belongs to: its key without the ``eps=...`` part."""
    return re.sub(r"/?eps=[0-9.]+(?:/[0-9.]+)?", "", key).strip("/") or key


def adversarial_series(runs: list[ModelRun]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """model → attack family → sorted (ε, accuracy) points; ε = 0 from the clean cell when present."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in runs:
        series: dict[str, list[tuple[float, float]]] = {}
        for key, cell in run.results.cells.items():
            eps = parse_eps(key, cell) if is_adversarial(key, cell) else None
            if eps is not None:
                series.setdefault(attack_family(key), []).append((eps, cell.value))
        if "clean" in run.results.cells:
            for pts in series.values():
                if all(e > 0 for e, _ in pts):
                    pts.append((0.0, run.results.cells["clean"].value))
        out[run.name] = {k: sorted(v) for k, v in series.items()}
    return out


def all_cells_rows(run: ModelRun) -> list[Cell]:
    return list(run.results.cells.values())
