"""The report's "Findings": short sentences written from the stored numbers (no number recomputed).

Rules (ours): the best model per summary column, with its 95 % interval; the runner-up is named
with the paired test of the two on the same images (robustune.report.compare: exact McNemar for an
accuracy, a paired bootstrap over images for mCE / mean corruption accuracy), "resolved (p = …)"
at p < 0.05 or "not resolved at this n"; one test per column, not adjusted across columns. Where
no paired test is possible (outcomes not stored, other images) the two 95 % intervals are
compared instead and the line says so; a column where
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


def _difference_verdict(runs: dict[str, ModelRun], key: str, best: str, second: str, a: Cell, b: Cell) -> str:
    from robustune.report.compare import Evaluated, paired_cell

    test = None
    if best in runs and second in runs:
        ev = [Evaluated(r.name, r.results, r.folder, None) for r in (runs[best], runs[second])]
        test = paired_cell(ev[0], ev[1], key)
    if test is not None and test.p_value is not None:
        how = "exact McNemar" if test.test == "McNemar" else "paired bootstrap over images"
        return f" — {best} vs {second}: {test.verdict} ({how}, n = {test.n})"
    if _overlap(a, b):
        return " — the intervals overlap (no paired test: per-image outcomes not stored): not resolved at this n"
    return " (no paired test: per-image outcomes not stored)"


def column_finding(table: Table, key: str, runs: list[ModelRun] | None = None) -> str | None:
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
        text += _difference_verdict({r.name: r for r in runs or []}, key, lead[0], second, cell, cells[second])
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


def validation_split_notes(runs: list[ModelRun]) -> list[str]:
    """Models evaluated on the split they were validated on during training (ImageNet's layout)."""
    return [f"**{run.name}** is evaluated on its validation split ({run.results.dataset.get('split')!r}, "
            "the folder has no test split): its accuracy there was only reported during training; no "
            "checkpoint was selected on it (the last epoch is the model)."
            for run in runs if run.results.model.get("evaluated_on_validation_split")]


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
    lines = [f for f in (column_finding(summary, c.key, runs) for c in columns) if f]
    lines += clean_caveats(runs)
    lines += validation_split_notes(runs)
    lines += list(extra or [])
    lines += check_findings(runs)
    if skipped:
        lines += [f"Skipped (not in the tables): `{path}` — {reason}" for path, reason in skipped]
    else:
        lines.append("No results file was skipped.")
    return lines
