"""The report's "Findings": short sentences written from the stored numbers (no number recomputed).

Rules (ours): the best model per summary column, with its 95 % interval; the runner-up is named
when the two intervals overlap (the difference is then not resolved at this n); a column where
every model has the same value names no best; a model more than ``CLEAN_DROP_POINTS`` below the
reference model's clean accuracy gets a caveat; failed sanity checks and skipped files are listed.
"""

from __future__ import annotations

from robustune.eval.results import Cell
from robustune.report.tables import (
    CLEAN_DROP_POINTS,
    ModelRun,
    Table,
    format_ci,
    format_value,
    reference_clean,
)
from robustune.report.units import is_fraction


def _shown(cell: Cell) -> str:
    unit = " %" if is_fraction(cell.metric) or cell.metric in ("mCE", "relative_mCE", "CE") else ""
    ci = format_ci(cell)
    extra = f" (95 % CI {ci})" if ci and not ci.startswith("n =") else (f" ({ci})" if ci else "")
    return f"{format_value(cell)}{unit}{extra}"


def _overlap(a: Cell, b: Cell) -> bool:
    return bool(a.ci95 and b.ci95 and a.ci95[0] <= b.ci95[1] and b.ci95[0] <= a.ci95[1])


def column_finding(table: Table, key: str) -> str | None:
    col = next(c for c in table.columns if c.key == key)
    cells = {m: r[key] for m, r in table.rows.items() if key in r}
    if len(cells) < 2:
        return None
    title = col.title.replace(" (%)", "").replace(" ↓", "")
    excluded = [m for m in cells if key in table.marks.get(m, {})]
    ranked = {m: c for m, c in cells.items() if m not in excluded}
    note = f" ({', '.join(excluded)} † not ranked here: see the clean-accuracy caveat)" if excluded else ""
    best = table.best.get(key)
    if not best:
        if len(ranked) < 2:
            return f"**{title}**: fewer than two comparable models; no best{note}."
        any_cell = next(iter(ranked.values()))
        return f"**{title}**: all {len(ranked)} models are equal ({format_value(any_cell)}); no best{note}."
    ordered = sorted(cells, key=lambda m: cells[m].value, reverse=col.higher_is_better)
    lead = sorted(best)
    cell = cells[lead[0]]
    text = f"**{title}**: best {', '.join(f'**{m}**' for m in lead)} at {_shown(cell)}"
    rest = [m for m in ordered if m not in best and m not in excluded]
    if rest:
        second = rest[0]
        text += f"; next {second} at {_shown(cells[second])}"
        if _overlap(cell, cells[second]):
            text += " — the intervals overlap: not resolved at this n"
    return text + note + "."


def clean_caveats(runs: list[ModelRun]) -> list[str]:
    ref = reference_clean(runs)
    if ref is None:
        return []
    out = []
    for run in runs:
        cell = run.results.cells.get("clean")
        if cell is None or run.name == ref[0]:
            continue
        drop = 100 * (ref[1] - cell.value)
        if drop > CLEAN_DROP_POINTS:
            out.append(f"**{run.name} lost {drop:.1f} points of clean accuracy** against {ref[0]} "
                       f"({100 * ref[1]:.1f} → {100 * cell.value:.1f} %): read its robustness numbers as a "
                       "trade-off, and its relative mCE (degradation from its own lower clean accuracy) "
                       "as not comparable; it is not starred there.")
    return out


def check_findings(runs: list[ModelRun]) -> list[str]:
    out = []
    for run in runs:
        failed = [c for c in run.results.checks if not c.get("passed", True)]
        for c in failed:
            out.append(f"Sanity check **failed** for {run.name}: {c.get('check')} on {c.get('cell')} "
                       f"({c.get('detail')}).")
    return out


def findings(runs: list[ModelRun], summary: Table | None, skipped: list[tuple[str, str]] | None = None,
             extra: list[str] | None = None) -> list[str]:
    """The Findings bullet points (Markdown inline: ``**bold**`` only)."""
    columns = summary.columns if summary is not None else []
    lines = [f for f in (column_finding(summary, c.key) for c in columns) if f]
    lines += clean_caveats(runs)
    lines += list(extra or [])
    lines += check_findings(runs)
    if skipped:
        lines += [f"Skipped (not in the tables): `{path}` — {reason}" for path, reason in skipped]
    else:
        lines.append("No results file was skipped.")
    return lines
