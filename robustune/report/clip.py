"""The CLIP base-to-new table of a few-shot protocol (``table.json``) as a report :class:`Section`.

Accuracies in %, mean over seeds; "± std" only when there is more than one seed. The best value
per column is bold (none when all are equal). Method labels can be given display names.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

from robustune.eval import eps_label
from robustune.files import read_json
from robustune.report.render import Section, inline_html
from robustune.report.seeds import mean_std_text


def _metric_title(metric: str) -> str:
    return "natural" if metric == "natural" else metric.replace("pgd ", "PGD ε=")


def _value(stats: dict[str, Any], key: str, seeds: int) -> str:
    return mean_std_text(stats[key], stats["std"], seeds)


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(part, metric, title): base / new / HM for every metric of the table."""
    metrics = list(rows[0]["metrics"]["base"])
    return [(part, m, f"{label} {_metric_title(m)}")
            for m in metrics for part, label in (("base", "Base"), ("new", "New"), ("hm", "HM"))]


def _cell_value(row: dict[str, Any], part: str, metric: str) -> tuple[float, str]:
    stats = row["metrics"][part][metric]
    key = "hm_of_means" if part == "hm" else "mean"
    return stats[key], _value(stats, key, len(row["seeds"]))


def _note(table: dict[str, Any]) -> str:
    cells = table.get("cells") or []
    spec = (cells[0].get("eval") if cells else None) or {}
    ns = sorted({(c["evals"]["base"].get("n"), c["evals"]["new"].get("n")) for c in cells if "base" in c["evals"]})
    n_text = "; ".join(f"n = {b} base / {n} new test images" for b, n in ns if b)
    step = spec.get("pgd_alpha")
    step_text = f"step size {eps_label(step)}" if isinstance(step, (int, float)) else "step size 2.5·ε/steps"
    return ("Base: accuracy on the classes trained on (few-shot); New: accuracy on the held-out classes, "
            "never seen in training (classified from their text prompts only); HM: harmonic mean "
            "2·Base·New / (Base + New) of the seed-averaged accuracies (CoCoOp / FAP's summary). "
            "natural: clean test images; PGD ε: accuracy under PGD-"
            f"{spec.get('pgd_steps', '?')} L∞ at that radius ({step_text}, 1 restart). "
            f"Mean over seeds, ± std only with several seeds. {n_text}.").replace(" .", ".")


def clip_section(table_json: str | Path, title: str, names: Mapping[str, str] | None = None) -> Section:
    """The base-to-new rows of ``table_json`` (written by :func:`robustune.fewshot.run_protocol`)."""
    table = read_json(table_json)
    rows = [r for r in table["rows"] if r["setting"] == "base2new"]
    if not rows:
        raise ValueError(f"{table_json} has no base-to-new rows")
    names = dict(names or {})
    cols = _columns(rows)
    values = {r["method"]: [_cell_value(r, p, m) for p, m, _ in cols] for r in rows}
    best: list[set[str]] = []
    for i in range(len(cols)):
        top = max(v[i][0] for v in values.values())
        winners = {m for m, v in values.items() if abs(v[i][0] - top) < 1e-9}
        best.append(winners if len(winners) < len(values) else set())
    head = ["method", "seeds", *[t for _, _, t in cols]]
    md = [f"## {title}", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    body = []
    for r in rows:
        label = names.get(r["method"], r["method"])
        shown = [f"**{v[1]}**" if r["method"] in best[i] else v[1] for i, v in enumerate(values[r["method"]])]
        md.append(f"| {label} | {len(r['seeds'])} | " + " | ".join(shown) + " |")
        body.append(f"<tr><td class='model'>{html.escape(label)}</td><td>{len(r['seeds'])}</td>"
                    + "".join(f"<td{' class=best' if r['method'] in best[i] else ''}>{inline_html(s)}</td>"
                              for i, s in enumerate(shown)) + "</tr>")
    note = _note(table)
    md += ["", note, ""]
    out_html = (f"<h2>{html.escape(title)}</h2><div class='scroll'><table><tr>"
                + "".join(f"<th{' class=model' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(head))
                + "</tr>" + "".join(body) + f"</table></div><p class='note'>{html.escape(note)}</p>")
    return Section(title, out_html, "\n".join(md), findings=_findings(rows, cols, values, names))


def _findings(rows, cols, values, names) -> list[str]:
    out = []
    for i, (part, metric, col_title) in enumerate(cols):
        if part != "hm":
            continue
        ranked = sorted(values, key=lambda m: values[m][i][0], reverse=True)
        top = ranked[0]
        if len(ranked) > 1 and abs(values[top][i][0] - values[ranked[1]][i][0]) < 1e-9:
            continue
        text = f"**CLIP {col_title}**: best **{names.get(top, top)}** at {values[top][i][1]} %"
        if len(ranked) > 1:
            text += f"; next {names.get(ranked[1], ranked[1])} at {values[ranked[1]][i][1]} %"
        out.append(text + ".")
    return out
