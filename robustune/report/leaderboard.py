"""A RobustBench-like leaderboard page: one self-contained HTML file, no network.

One row per model, one column per headline number (clean, each attack's threat model, mean
corruption accuracy, mCE, ImageNet-A/R); every value shows its protocol, n and 95 % interval on
hover; headers sort (click again to reverse); a selector keeps the columns of one threat model or
suite and a text box filters models. Significance markers come from the paired tests of
robustune.report.compare against a chosen reference model: ▲ / ▼ better / worse and resolved
(p < 0.05, Holm within the headline family), ≈ not resolved at this n.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from robustune.eval.results import Cell
from robustune.report.compare import Evaluated, compare_pair, load_evaluated
from robustune.report.model_card import protocol_text
from robustune.files import write_text_atomic

LOWER_IS_BETTER = ("mCE", "relative_mCE", "unnormalized_mCE")
HEADLINE = ("clean", "pgd/", "adversarial/", "corruptions/mean_corruption_accuracy", "corruptions/mCE",
            "corruptions/relative_mCE", "imagenet-a", "imagenet-r")


@dataclass
class Column:
    key: str
    title: str
    group: str  # what the filter selects: "clean", "Linf", "L2", "corruptions", ...
    lower_is_better: bool = False


@dataclass
class Board:
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)  # name, method, cells: key -> dict
    reference: str = ""


def _column(key: str, cell: Cell) -> Column:
    t = cell.details.get("threat_model") or {}
    if t:
        title = f"{key.split('/')[0]} {t.get('norm', '')} {t.get('eps_label', '')}".strip()
        if t.get("steps"):
            title += f" ({t['steps']} steps)"
        return Column(key, title, str(t.get("norm") or "adversarial"))
    if key.startswith("corruptions/"):
        return Column(key, key.split("/", 1)[1].replace("_", " "), "corruptions", cell.metric in LOWER_IS_BETTER)
    return Column(key, key, "clean" if key == "clean" else key)


def _protocol(cell: Cell, dataset: dict) -> str:
    parts = [f"{cell.metric}", protocol_text(cell), f"n = {cell.n}" if cell.n else "",
             f"95 % CI {100 * cell.ci95[0]:.1f}–{100 * cell.ci95[1]:.1f}" if cell.ci95 else "",
             f"{dataset.get('name')} / {dataset.get('split')}"]
    return "; ".join(p for p in parts if p and p != "—")


def _shown(cell: Cell) -> str:
    return f"{cell.value:.2f}" if cell.metric in LOWER_IS_BETTER else f"{100 * cell.value:.2f}"


def build_board(paths: list[str | Path], reference: str | Path | None = None, samples: int = 2000) -> Board:
    """Rows of every run and the paired markers against ``reference`` (default: the first run)."""
    runs = [load_evaluated(p) for p in paths]
    ref = load_evaluated(reference) if reference is not None else runs[0]
    keys: dict[str, Column] = {}
    for ev in runs:
        for key, cell in ev.results.cells.items():
            if key.startswith(HEADLINE) and key not in keys:
                keys[key] = _column(key, cell)
    order = sorted(keys, key=lambda k: ([i for i, h in enumerate(HEADLINE) if k.startswith(h)][0], k))
    board = Board([keys[k] for k in order], reference=ref.label)
    for ev in runs:
        tests = {} if ev.results_dir == ref.results_dir else {
            c.key: c for c in compare_pair(ev, ref, samples=samples).cells}
        board.rows.append({"name": ev.label, "method": ev.results.model.get("method") or "",
                           "is_reference": ev.results_dir == ref.results_dir,
                           "cells": {k: _entry(ev, k, tests.get(k), keys[k]) for k in order if k in ev.results.cells}})
    return board


def _entry(ev: Evaluated, key: str, test, col: Column) -> dict:
    cell = ev.results.cells[key]
    entry = {"value": cell.value, "shown": _shown(cell), "title": _protocol(cell, ev.results.dataset), "mark": ""}
    if test is not None and test.p_adjusted is not None:
        better = (test.difference < 0) if col.lower_is_better else (test.difference > 0)
        entry["mark"] = ("▲" if better else "▼") if test.p_adjusted < 0.05 else "≈"
        entry["title"] += f"; vs reference: {test.verdict} ({test.test})"
    return entry


def render(board: Board, title: str = "robustune leaderboard") -> str:
    """The page (inline CSS and JS only)."""
    groups = sorted({c.group for c in board.columns})
    head = "".join(f'<th data-col="{i + 2}" data-group="{html.escape(c.group)}" data-lower="{int(c.lower_is_better)}" '
                   f'title="click to sort{" (lower is better)" if c.lower_is_better else ""}">{html.escape(c.title)}</th>'
                   for i, c in enumerate(board.columns))
    body = []
    for r in board.rows:
        cells = []
        for c in board.columns:
            e = r["cells"].get(c.key)
            if e is None:
                cells.append(f'<td data-group="{html.escape(c.group)}" data-value="">—</td>')
                continue
            mark = f'<span class="mark">{e["mark"]}</span>' if e["mark"] else ""
            cells.append(f'<td data-group="{html.escape(c.group)}" data-value="{e["value"]!r}" '
                         f'title="{html.escape(e["title"])}">{e["shown"]}{mark}</td>')
        ref = ' class="reference"' if r["is_reference"] else ""
        body.append(f'<tr{ref}><td class="name">{html.escape(r["name"])}{" (reference)" if r["is_reference"] else ""}'
                    f'</td><td>{html.escape(r["method"])}</td>{"".join(cells)}</tr>')
    options = "".join(f'<option value="{html.escape(g)}">{html.escape(g)}</option>' for g in groups)
    data = html.escape(json.dumps({"reference": board.reference, "columns": [c.key for c in board.columns]}))
    return PAGE.format(title=html.escape(title), head=head, body="\n".join(body), options=options,
                       reference=html.escape(board.reference), data=data)


def write_leaderboard(paths: list[str | Path], out: str | Path, reference: str | Path | None = None,
                      title: str = "robustune leaderboard", samples: int = 2000) -> Path:
    out = Path(out)
    write_text_atomic(out, render(build_board(paths, reference, samples), title))
    return out


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#223}}table{{border-collapse:collapse;font-size:14px}}
th,td{{border-bottom:1px solid #dde;padding:5px 10px;text-align:right}}td.name,th.name{{text-align:left}}
th{{cursor:pointer;background:#f3f4f8;user-select:none}}th.sorted-asc:after{{content:" ▲"}}th.sorted-desc:after{{content:" ▼"}}
tr.reference{{background:#fffbe6}}.mark{{margin-left:4px;font-size:12px;color:#557}}.hidden{{display:none}}
.controls{{margin:12px 0}}.note{{font-size:12px;color:#556;max-width:900px}}
</style></head><body>
<h1>{title}</h1>
<div class="controls"><label>threat model / suite <select id="group"><option value="">all</option>{options}</select></label>
<label> model <input id="filter" placeholder="filter by name"></label></div>
<table id="board" data-board="{data}"><thead><tr><th class="name" data-col="0" data-lower="1">model</th><th data-col="1" data-lower="1">method</th>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<p class="note">Values in % (mCE as its percentage). Hover a value for its protocol, n and 95 % interval.
Markers against the reference <b>{reference}</b>, from paired tests on the same images (exact McNemar;
paired bootstrap for corruption summaries; Holm-adjusted): ▲ better and resolved (p &lt; 0.05), ▼ worse
and resolved, ≈ not resolved at this n. Made by robustune; no network needed.</p>
<script>
(function(){{
  var table=document.getElementById('board'), tbody=table.tBodies[0];
  function key(tr,col){{var td=tr.cells[col], v=td.getAttribute('data-value');
    return v===null?td.textContent.toLowerCase():(v===''?null:parseFloat(v));}}
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th){{
    th.addEventListener('click',function(){{
      var col=+th.getAttribute('data-col'), was=th.classList.contains('sorted-asc')||th.classList.contains('sorted-desc');
      var asc=was?!th.classList.contains('sorted-asc'):th.getAttribute('data-lower')==='1';  // best first
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(o){{o.classList.remove('sorted-asc','sorted-desc');}});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      var rows=Array.prototype.slice.call(tbody.rows);
      rows.sort(function(a,b){{var x=key(a,col),y=key(b,col);
        if(x===null)return 1; if(y===null)return -1;
        return (x<y?-1:x>y?1:0)*(asc?1:-1);}});
      rows.forEach(function(r){{tbody.appendChild(r);}});
    }});
  }});
  function apply(){{
    var g=document.getElementById('group').value, f=document.getElementById('filter').value.toLowerCase();
    table.querySelectorAll('[data-group]').forEach(function(el){{
      el.classList.toggle('hidden', g!=='' && el.getAttribute('data-group')!==g);}});
    Array.prototype.forEach.call(tbody.rows,function(r){{
      r.classList.toggle('hidden', f!=='' && r.cells[0].textContent.toLowerCase().indexOf(f)<0);}});
  }}
  document.getElementById('group').addEventListener('change',apply);
  document.getElementById('filter').addEventListener('input',apply);
}})();
</script></body></html>
"""
