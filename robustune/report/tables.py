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
from robustune.report.units import LOWER_IS_BETTER, is_fraction


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


def load_runs(paths: Sequence[str | Path], skipped: list[tuple[str, str]] | None = None) -> list[ModelRun]:
    """One :class:`ModelRun` per path (results.json, an eval folder or a run folder), unique names.

    With a ``skipped`` list, a missing or unreadable file is appended to it as (path, reason)
    instead of raising, so a report still shows the others and says which were left out.
    """
    runs: list[ModelRun] = []
    for p in paths:
        try:
            file = _results_file(Path(p))
            res = EvalResults.load(file)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if skipped is None:
                raise
            skipped.append((str(p), f"{type(exc).__name__}: {exc}"))
            continue
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
    rows: dict[str, dict[str, Cell]]  # row label (a model, or a corruption in a grid) -> column key -> cell
    note: str = ""
    best: dict[str, set[str]] = field(default_factory=dict)  # column key -> best row labels
    row_header: str = "model"
    show_ci: bool = False  # print each cell's 95 % interval under its value
    marks: dict[str, dict[str, str]] = field(default_factory=dict)  # row -> column key -> footnote mark

    def mark_best(self, exclude: dict[str, set[str]] | None = None) -> "Table":
        """Best per column; rows in ``exclude[column]`` are not candidates. A tie of every row stars none."""
        for col in self.columns:
            vals = {m: r[col.key].value for m, r in self.rows.items()
                    if col.key in r and m not in (exclude or {}).get(col.key, set())}
            if len(vals) < 2:
                continue
            target = max(vals.values()) if col.higher_is_better else min(vals.values())
            best = {m for m, v in vals.items() if abs(v - target) < 1e-12}
            if len(best) < len(vals):
                self.best[col.key] = best
            else:
                self.best.pop(col.key, None)
        return self


def format_value(cell: Cell) -> str:
    """Percent with two decimals: fractions are ×100, mCE-style numbers are already percentages."""
    return f"{100 * cell.value:.2f}" if is_fraction(cell.metric) else f"{cell.value:.2f}"


def format_ci(cell: Cell) -> str:
    """``92.6–97.0`` (the stored 95 % interval in %), else ``n = 360``, else empty."""
    if cell.ci95 and is_fraction(cell.metric):
        return f"{100 * cell.ci95[0]:.1f}–{100 * cell.ci95[1]:.1f}"
    return f"n = {cell.n}" if cell.n else ""


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


def _table(title: str, runs: list[ModelRun], cols: list[Column], note: str = "", **kw) -> Table:
    rows = {r.name: {c.key: r.results.cells[c.key] for c in cols if c.key in r.results.cells} for r in runs}
    return Table(title, cols, rows, note, **kw).mark_best()


# Ours: a model more than this many points below the reference's clean accuracy "lost clean accuracy
# badly"; its relative mCE (degradation measured from its own, lower, clean accuracy) is not starred.
CLEAN_DROP_POINTS = 5.0


def reference_clean(runs: list[ModelRun]) -> tuple[str, float] | None:
    """(name, clean accuracy) of the mCE reference model if it is in the report, else the best clean."""
    cleans = {r.name: r.results.cells["clean"].value for r in runs if "clean" in r.results.cells}
    if not cleans:
        return None
    for r in runs:
        normalizer = str((r.results.cells.get("corruptions/mCE") or Cell("", "", "", 0)).details.get("normalizer", ""))
        for name in cleans:
            if normalizer.endswith(f": {name}"):
                return name, cleans[name]
    best = max(cleans, key=cleans.get)
    return best, cleans[best]


def clean_drops(runs: list[ModelRun]) -> dict[str, float]:
    """Models whose clean accuracy is > CLEAN_DROP_POINTS below the reference → drop in points."""
    ref = reference_clean(runs)
    if ref is None:
        return {}
    out = {}
    for r in runs:
        cell = r.results.cells.get("clean")
        if cell is not None and 100 * (ref[1] - cell.value) > CLEAN_DROP_POINTS:
            out[r.name] = 100 * (ref[1] - cell.value)
    return out


SUMMARY_TITLES = {
    "clean": "clean top-1 (%)",
    "corruptions/mean_corruption_accuracy": "mean corruption acc. (%)",
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
    rows = {r.name: {c.key: r.results.cells[c.key] for c in cols if c.key in r.results.cells} for r in runs}
    table = Table("Summary", cols, rows, note, show_ci=True)
    drops = clean_drops(runs)
    rel = "corruptions/relative_mCE"
    table.mark_best(exclude={rel: set(drops)})
    for name in drops:
        if rel in rows[name]:
            table.marks.setdefault(name, {})[rel] = "†"
    if any(rel in rows[n] for n in drops):
        table.note += (f" † not starred: clean accuracy more than {CLEAN_DROP_POINTS:g} points below the reference "
                       "model's, so its relative mCE measures degradation from a lower start.")
    return table


def corruption_ce_table(runs: list[ModelRun]) -> Table | None:
    """CE per corruption, one short column per corruption (``gaussian_noise`` → ``gaussian``)."""
    cols = [_column(k, c, k.split("/")[-1].split("_")[0])
            for k, c in _keys(runs, lambda k, c: k.startswith("corruptions/CE/"))]
    if not cols:
        return None
    return _table("Corruption error per corruption (CE, %, lower is better)", runs, cols)


def corruption_grid(run: ModelRun) -> Table | None:
    """One model's top-1 accuracy per corruption (rows) × severity (columns), cells as stored."""
    cells = [c for c in run.results.cells.values() if c.suite == "corruptions" and c.metric == "top1_accuracy"]
    if not cells:
        return None
    severities = sorted({int(c.details["severity"]) for c in cells})
    cols = [Column(str(s), f"s{s}", "top1_accuracy", True) for s in severities]
    rows: dict[str, dict[str, Cell]] = {}
    for c in cells:
        rows.setdefault(str(c.details["corruption"]), {})[str(int(c.details["severity"]))] = c
    ns = sorted({c.n for c in cells if c.n})
    note = f"n = {', '.join(map(str, ns))} images per cell" if ns else ""
    return Table(run.name, cols, rows, note, row_header="corruption")


def flip_probability_table(runs: list[ModelRun]) -> Table | None:
    cols = [_column(k, c, c.details.get("perturbation", k)) for k, c in
            _keys(runs, lambda k, c: c.suite == "imagenet-p" and c.metric == "flip_probability")]
    if not cols:
        return None
    return _table("ImageNet-P flip probability per perturbation (%, lower is better)", runs, cols)


def threat_model_text(cell: Cell) -> str:
    """One line of what an adversarial cell measured: norm, ε, steps, step size, restarts, n."""
    t = cell.details.get("threat_model") or {}
    parts = []
    if t.get("norm"):
        parts.append(f"{t['norm'].replace('Linf', 'L∞')}")
    if isinstance(t.get("eps"), (int, float)):
        label = t.get("eps_label") or f"{t['eps']:.4g}"
        parts.append(f"ε = {label}")
    if t.get("steps") is not None:
        parts.append(f"{t['steps']} steps")
    if isinstance(t.get("step_size"), (int, float)):
        parts.append(f"step size {255 * t['step_size']:.3g}/255")
    if t.get("restarts") is not None:
        parts.append(f"{t['restarts']} restart{'s' if t['restarts'] != 1 else ''}")
    if t.get("random_start"):
        parts.append("random start")
    if t.get("loss"):
        parts.append(f"{t['loss']} loss")
    if t.get("family") == "autoattack":
        parts.append("AutoAttack " + str(t.get("version", "standard")))
    if cell.n:
        parts.append(f"n = {cell.n} images")
    return ", ".join(parts) if parts else "threat model not recorded"


def threat_model_lines(table: Table) -> list[tuple[str, str]]:
    """(column title, threat-model text) for every adversarial column of ``table``; n ranges over models."""
    out = []
    for col in table.columns:
        cells = [r[col.key] for r in table.rows.values() if col.key in r]
        if not cells or not is_adversarial(col.key, cells[0]):
            continue
        text = threat_model_text(cells[0])
        ns = sorted({c.n for c in cells if c.n})
        if len(ns) > 1:
            text = text.replace(f"n = {cells[0].n} images", f"n = {'/'.join(map(str, ns))} images (differs by model)")
        out.append((col.title, text))
    return out


def is_adversarial(key: str, cell: Cell) -> bool:
    return key.startswith(("pgd/", "adversarial/")) and cell.metric.endswith("accuracy")


def adversarial_title(key: str, cell: Cell) -> str:
    """``pgd/Linf/eps=8/255/steps=10`` → ``PGD-10 Linf ε=8/255 (%)``; other keys keep their parts."""
    parts = key.split("/")
    eps = re.search(r"eps=([0-9.]+(?:/[0-9.]+)?)", key)
    steps = re.search(r"steps=(\d+)", key)
    if parts[0] == "pgd" and eps:
        return f"PGD-{steps.group(1) if steps else '?'} ε={eps.group(1)} (%)"
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
