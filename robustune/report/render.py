"""Render report tables and figures as one self-contained HTML file or as Markdown.

The HTML has inline CSS and base64-embedded PNGs: it opens from disk with no server and no
network. Every table cell carries the stored value unrounded in ``data-value``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from robustune.report.plots import Figure
from robustune.report.tables import ModelRun, Table, format_value, is_fraction

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d2330;max-width:1400px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #d0d4de;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef1f7}td.model,th.model{text-align:left;font-weight:600}
td.best{background:#d9f2dd;font-weight:700}td.missing{color:#aab}
.note{color:#556;font-size:12px;margin:2px 0 12px}.meta{color:#556;font-size:13px}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #e3e6ee}figcaption{font-size:12px;color:#556}
.scroll{overflow-x:auto}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def table_html(table: Table) -> str:
    head = "".join(f"<th title='{_e(c.key)}'>{_e(c.title)}</th>" for c in table.columns)
    rows = []
    for model, cells in table.rows.items():
        tds = [f"<td class='model'>{_e(model)}</td>"]
        for col in table.columns:
            cell = cells.get(col.key)
            if cell is None:
                tds.append("<td class='missing'>–</td>")
                continue
            best = model in table.best.get(col.key, set())
            tip = f"{cell.metric} = {cell.value!r}" + (f", n = {cell.n}" if cell.n else "")
            tds.append(f"<td class='{'best' if best else ''}' data-key='{_e(col.key)}' data-value='{cell.value!r}' "
                       f"title='{_e(tip)}'>{format_value(cell)}{' ★' if best else ''}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    note = f"<p class='note'>{_e(table.note)}</p>" if table.note else ""
    return (f"<h2>{_e(table.title)}</h2><div class='scroll'><table><tr><th class='model'>model</th>{head}</tr>"
            + "".join(rows) + f"</table></div>{note}")


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = _e(fig.title) + (f" — {_e(fig.caption)}" if fig.caption else "")
    return f"<figure><img alt='{_e(fig.title)}' src='data:image/png;base64,{data}'><figcaption>{cap}</figcaption></figure>"


def cells_html(run: ModelRun) -> str:
    rows = []
    for key, cell in run.results.cells.items():
        ci = f"[{cell.ci95[0]:.4f}, {cell.ci95[1]:.4f}]" if cell.ci95 else ""
        shown = format_value(cell) + (" %" if is_fraction(cell.metric) or cell.metric in ("mCE", "CE") else "")
        rows.append(f"<tr><td class='model'>{_e(key)}</td><td>{_e(cell.metric)}</td>"
                    f"<td data-key='{_e(key)}' data-value='{cell.value!r}'>{cell.value!r}</td><td>{shown}</td>"
                    f"<td>{cell.n if cell.n is not None else ''}</td><td>{ci}</td></tr>")
    return (f"<details><summary>{_e(run.name)}: all {len(rows)} cells of {_e(run.path)}</summary>"
            "<table><tr><th class='model'>cell</th><th>metric</th><th>value (as stored)</th><th>shown as</th>"
            "<th>n</th><th>95 % CI</th></tr>" + "".join(rows) + "</table></details>")


def render_html(title: str, runs: list[ModelRun], tables: list[Table], sections: dict[str, list[Figure]],
                meta: str = "") -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1><p class='meta'>{_e(meta)}</p>",
             "<p class='note'>Accuracies in %, higher is better; mCE / CE / mFR in %, lower is better "
             "(↓). ★ and green: best per column. Hover a number for the stored value.</p>"]
    parts += [table_html(t) for t in tables]
    for name, figs in sections.items():
        if figs:
            parts.append(f"<h2>{_e(name)}</h2>" + "".join(figure_html(f) for f in figs))
    parts.append("<h2>Every stored cell</h2>" + "".join(cells_html(r) for r in runs))
    parts.append("</body></html>")
    return "\n".join(parts)


def table_markdown(table: Table) -> str:
    head = "| model | " + " | ".join(c.title for c in table.columns) + " |"
    sep = "|---|" + "---:|" * len(table.columns)
    lines = [f"## {table.title}", "", head, sep]
    for model, cells in table.rows.items():
        vals = []
        for col in table.columns:
            cell = cells.get(col.key)
            text = "–" if cell is None else format_value(cell)
            vals.append(f"**{text}**" if cell is not None and model in table.best.get(col.key, set()) else text)
        lines.append(f"| {model} | " + " | ".join(vals) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def render_markdown(title: str, tables: list[Table], sections: dict[str, list[Figure]], out_path: Path,
                    meta: str = "") -> tuple[str, dict[Path, bytes]]:
    """Markdown text and the PNG files it links to (written beside it in ``<stem>_files/``)."""
    files: dict[Path, bytes] = {}
    lines = [f"# {title}", "", meta, "", "Accuracies in %; mCE / CE / mFR in %, lower is better; "
             "**bold** = best per column.", ""]
    lines += [table_markdown(t) for t in tables]
    folder = Path(f"{out_path.stem}_files")
    for name, figs in sections.items():
        if figs:
            lines.append(f"## {name}\n")
            for i, fig in enumerate(figs):
                rel = folder / f"{name.lower().replace(' ', '_')}_{i}.png"
                files[out_path.parent / rel] = fig.png
                lines.append(f"![{fig.title}]({rel.as_posix()})\n")
    return "\n".join(lines), files
