"""Render report tables, figures and text blocks as self-contained HTML or as Markdown.

A report is a list of :class:`Section` s, each carrying both renderings (and the image files its
Markdown links to); :func:`page_html` / :func:`page_markdown` join them. The HTML has inline CSS
and base64-embedded images: it opens from disk with no server and no network. Every table cell
carries the stored value unrounded in ``data-value``.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from robustune.report.plots import Figure
from robustune.report.tables import ModelRun, Table, format_ci, format_value
from robustune.report.units import is_fraction

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:20px;color:#1d2330;max-width:1240px}
h1{font-size:23px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #dde}
h3{font-size:15px;margin:14px 0 4px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #d0d4de;padding:3px 7px;text-align:right}
th{background:#eef1f7;font-weight:600;max-width:92px;white-space:normal;vertical-align:bottom}
td{white-space:nowrap}td.model,th.model{text-align:left;font-weight:600;max-width:none}
td.best{background:#d9f2dd;font-weight:700}td.missing{color:#aab}
.ci{display:block;color:#667;font-size:10.5px;font-weight:400}
.note{color:#556;font-size:12px;margin:2px 0 12px;max-width:1100px}.meta{color:#556;font-size:13px}
ul.findings li{margin:3px 0;max-width:1100px}ul.threat{font-size:12px;color:#445;margin-top:2px}
.grids{display:flex;flex-wrap:wrap;gap:4px 18px}.grids table{font-size:11.5px}.grids h3{font-size:13px}
figure{display:inline-block;margin:8px 16px 8px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #e3e6ee}figcaption{font-size:12px;color:#556;max-width:900px}
.scroll{overflow-x:auto}
"""


@dataclass
class Section:
    """One block of the report, placed in order before the appendix (tables, figures, text).

    ``files`` are the images the Markdown links to, relative to the report's folder.
    """

    title: str
    html: str
    markdown: str
    files: dict[Path, bytes] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)  # lines added to the report's Findings


def _e(text: object) -> str:
    return html.escape(str(text))


def inline_html(text: str) -> str:
    """Escape, then Markdown's ``**bold**`` and `` `code` `` → HTML (the only markup findings use)."""
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", _e(text))
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _heat(cell) -> str:
    if not is_fraction(cell.metric):
        return ""
    return f" style='background:hsl(125,40%,{100 - 30 * max(0.0, min(1.0, cell.value)):.0f}%)'"


def table_html(table: Table, heading: str = "h2", heat: bool = False) -> str:
    head = "".join(f"<th title='{_e(c.key)}'>{_e(c.title)}</th>" for c in table.columns)
    rows = []
    for label, cells in table.rows.items():
        tds = [f"<td class='model'>{_e(label)}</td>"]
        for col in table.columns:
            cell = cells.get(col.key)
            if cell is None:
                tds.append("<td class='missing'>–</td>")
                continue
            best = label in table.best.get(col.key, set())
            mark = table.marks.get(label, {}).get(col.key, "")
            tip = f"{cell.metric} = {cell.value!r}" + (f", n = {cell.n}" if cell.n else "")
            ci = f"<span class='ci'>{_e(format_ci(cell))}</span>" if table.show_ci and format_ci(cell) else ""
            style = _heat(cell) if heat else ""
            tds.append(f"<td class='{'best' if best else ''}'{style} data-key='{_e(col.key)}' "
                       f"data-value='{cell.value!r}' title='{_e(tip)}'>{format_value(cell)}"
                       f"{' ★' if best else ''}{mark}{ci}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    note = f"<p class='note'>{_e(table.note)}</p>" if table.note else ""
    return (f"<{heading}>{_e(table.title)}</{heading}><div class='scroll'><table><tr>"
            f"<th class='model'>{_e(table.row_header)}</th>{head}</tr>" + "".join(rows) + f"</table></div>{note}")


def table_markdown(table: Table, heading: str = "##") -> str:
    head = f"| {table.row_header} | " + " | ".join(c.title for c in table.columns) + " |"
    sep = "|---|" + "---:|" * len(table.columns)
    lines = [f"{heading} {table.title}", "", head, sep]
    for label, cells in table.rows.items():
        vals = []
        for col in table.columns:
            cell = cells.get(col.key)
            if cell is None:
                vals.append("–")
                continue
            text = format_value(cell)
            if label in table.best.get(col.key, set()):
                text = f"**{text}**"
            text += table.marks.get(label, {}).get(col.key, "")
            if table.show_ci and format_ci(cell):
                text += f" ({format_ci(cell)})"
            vals.append(text)
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = _e(fig.title) + (f" — {_e(fig.caption)}" if fig.caption else "")
    return f"<figure><img alt='{_e(fig.title)}' src='data:image/png;base64,{data}'><figcaption>{cap}</figcaption></figure>"


def figures_section(title: str, figs: list[Figure], folder: Path) -> Section:
    """Figures embedded in the HTML; PNG files beside the Markdown (``<stem>_files/``)."""
    files, md = {}, [f"## {title}", ""]
    for i, fig in enumerate(figs):
        rel = folder / f"{re.sub(r'[^a-z0-9]+', '_', title.lower()).strip('_')}_{i}.png"
        files[rel] = fig.png
        md.append(f"![{fig.title}]({rel.as_posix()})\n")
    return Section(title, f"<h2>{_e(title)}</h2>" + "".join(figure_html(f) for f in figs), "\n".join(md), files)


def bullets_section(title: str, items: list[str], css: str = "findings") -> Section:
    html_items = "".join(f"<li>{inline_html(i)}</li>" for i in items)
    return Section(title, f"<h2>{_e(title)}</h2><ul class='{css}'>{html_items}</ul>",
                   f"## {title}\n\n" + "\n".join(f"- {i}" for i in items) + "\n")


def cells_html(run: ModelRun) -> str:
    rows = []
    for key, cell in run.results.cells.items():
        ci = f"[{cell.ci95[0]:.4f}, {cell.ci95[1]:.4f}]" if cell.ci95 else ""
        percent = is_fraction(cell.metric) or cell.metric in ("mCE", "CE", "unnormalized_mCE", "unnormalized_CE")
        shown = format_value(cell) + (" %" if percent else "")
        rows.append(f"<tr><td class='model'>{_e(key)}</td><td>{_e(cell.metric)}</td>"
                    f"<td data-key='{_e(key)}' data-value='{cell.value!r}'>{cell.value!r}</td><td>{shown}</td>"
                    f"<td>{cell.n if cell.n is not None else ''}</td><td>{ci}</td></tr>")
    return (f"<details><summary>{_e(run.name)}: all {len(rows)} cells of {_e(run.path)}</summary>"
            "<table><tr><th class='model'>cell</th><th>metric</th><th>value (as stored)</th><th>shown as</th>"
            "<th>n</th><th>95 % CI</th></tr>" + "".join(rows) + "</table></details>")


def page_html(title: str, meta: str, sections: list[Section], runs: list[ModelRun]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1><p class='meta'>{_e(meta)}</p>",
             "<p class='note'>Accuracies in %, higher is better; mCE / CE / mFR in %, lower is better "
             "(↓). Small grey numbers: the 95 % Wilson interval. ★ and green: best per column (none when "
             "all are equal). Hover a number for the stored value.</p>"]
    parts += [s.html for s in sections]
    parts.append("<h2>Appendix: every stored cell</h2>" + "".join(cells_html(r) for r in runs))
    parts.append("</body></html>")
    return "\n".join(parts)


def page_markdown(title: str, meta: str, sections: list[Section]) -> tuple[str, dict[Path, bytes]]:
    """Markdown text and the image files it links to (paths relative to the report's folder)."""
    lines = [f"# {title}", "", meta, "", "Accuracies in %; mCE / CE / mFR in %, lower is better; "
             "**bold** = best per column (none when all are equal); (a–b) = 95 % Wilson interval.", ""]
    files: dict[Path, bytes] = {}
    for s in sections:
        lines.append(s.markdown)
        files.update(s.files)
    return "\n".join(lines), files
