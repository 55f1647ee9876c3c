"""The reproduced table: ours (mean ± std over seeds) beside the paper's number and the difference.

Grid tables are summarised by :func:`robustune.ablation.summarise`, few-shot tables by
:func:`robustune.fewshot.table.write_tables`; this module adds the comparison with the numbers the
paper states and writes ``OUT/reproduce.md`` (the report section) and ``OUT/reproduce.json``.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from robustune.files import write_json, write_text_atomic
from robustune.report.seeds import markdown_table, mean_std_text
from robustune.report.units import in_percent
from robustune.reproduce.plan import Plan
from robustune.reproduce.spec import Reported


def _ours(rows: list[dict[str, Any]], r: Reported, metric_map: dict[str, str] | None = None) -> list[float]:
    """Our values (in %) of the row and metric a reported number points at, one per seed
    (``metric_map``: the scale's own metric for a reported one, e.g. another severity)."""
    want = (metric_map or {}).get(r.metric, r.metric)
    out = []
    for row in rows:
        if row["values"] == r.row:  # exactly that row (another grid's row may share some values)
            for name, value in row["metrics"].items():
                key, _, metric = name.partition(" [")
                if key == want:
                    out.append(in_percent(metric.rstrip("]"), value))
    return out


def comparison(rows: list[dict[str, Any]], reported: tuple[Reported, ...],
               metric_map: dict[str, str] | None = None) -> tuple[str, list[dict]]:
    """Markdown and records: paper row/column, the paper's value, ours (mean ± std, n seeds), Δ."""
    table, records = [], []
    for r in reported:
        vals = _ours(rows, r, metric_map)
        mean = statistics.fmean(vals) if vals else None
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        ours = mean_std_text(mean, std, len(vals)) if mean is not None else "not run"
        diff = f"{mean - r.value:+.1f}" if mean is not None else "—"
        table.append([r.paper_row, r.paper_column, f"{r.value:.1f}", ours, str(len(vals)), diff])
        records.append({"paper_row": r.paper_row, "paper_column": r.paper_column, "paper": r.value,
                        "ours": vals, "ours_mean": mean, "ours_std": std if vals else None,
                        "difference": None if mean is None else mean - r.value,
                        "our_metric": (metric_map or {}).get(r.metric, r.metric)})
    md = markdown_table(["paper row", "paper column", "paper", "ours", "seeds", "ours − paper"], table) + "\n"
    return md, records


def write_report(plan: Plan, records: list[dict[str, Any]], command: str) -> str:
    """Write ``reproduce.md`` / ``reproduce.json`` (and the grid's or protocol's own tables)."""
    s, t = plan.scale, plan.table
    if s.kind == "grid":
        from robustune.ablation import summarise

        axes = plan.axes or ["method"]
        ours_md = summarise(records, axes, list(s.columns) or None)
        write_json(plan.out / "ablation.json", {"axes": axes, "seeds": list(s.seeds), "rows": records})
    else:
        from robustune.fewshot.table import write_tables

        md_path, _ = write_tables(records, plan.out)
        ours_md = Path(md_path).read_text()
    if t.reported and s.kind == "grid":
        cmp_md, cmp = comparison(records, t.reported, s.metric_map)
    else:
        cmp_md, cmp = "No number of this table is stated in the paper text we hold.\n", []
    from robustune.reproduce.post import run_post

    post_md = run_post(plan)
    text = (f"## {t.title} — {plan.scale_name} scale\n\n`{command}`\n\n"
            f"{len(plan.cells)} cells, seeds {list(s.seeds) if s.kind == 'grid' else s.protocol.get('seeds')}; "
            f"values in %, mean ± std over seeds. Paper: {t.paper}.\n\n### Ours\n\n{ours_md}\n"
            f"### Beside the paper (its numbers are for its data and backbone; at the digits scale the "
            f"comparison shows the direction, not the level)\n\n{cmp_md}\n"
            + (f"### After the cells\n\n{post_md}" if post_md else "")
            + (f"Notes: {' '.join(x for x in (t.note, s.note) if x)}\n" if t.note or s.note else ""))
    write_text_atomic(plan.out / "reproduce.md", text)
    write_json(plan.out / "reproduce.json", {"table": t.name, "scale": plan.scale_name, "command": command,
                                             "comparison": cmp, "cells": len(plan.cells)})
    return text
