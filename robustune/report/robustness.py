"""``write_report``: several models' results.json side by side, as self-contained HTML or Markdown.

Order: Findings, the summary (with one threat-model line per adversarial column), corruption
grids (corruption × severity per model), CE per corruption, figures, then any extra sections
(``sections=``: e.g. the CLIP table of the demo or detection results), then the appendix of every
stored cell (HTML).
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import logging
from pathlib import Path
from typing import Sequence

from robustune.report import plots
from robustune.report.findings import findings
from robustune.report.render import (
    Section,
    bullets_section,
    figures_section,
    page_html,
    page_markdown,
    table_html,
    table_markdown,
)
from robustune.report.tables import (
    ModelRun,
    Table,
    corruption_ce_table,
    corruption_grid,
    flip_probability_table,
    load_runs,
    summary_table,
    threat_model_lines,
)
from robustune.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


def build_tables(runs: list[ModelRun]) -> list[Table]:
    tables = [summary_table(runs)]
    extra = (corruption_ce_table(runs), flip_probability_table(runs))
    tables += [t for t in extra if t is not None]
    return tables


def build_sections(runs: list[ModelRun], analysis_dirs: Sequence[str | Path] | None = None) -> dict[str, list]:
    return {
        "Adversarial robustness": [f for f in [plots.accuracy_vs_eps_figure(runs)] if f],
        "Common corruptions": [f for f in [plots.corruption_severity_figure(runs)] if f],
        "Analyses (GFN Sec. 3.1)": plots.analysis_figures(runs, [Path(d) for d in analysis_dirs or []]),
    }


def summary_section(table: Table) -> Section:
    threats = threat_model_lines(table)
    html = table_html(table)
    md = table_markdown(table)
    if threats:
        html += ("<p class='note'>Threat model of each adversarial column:</p><ul class='threat'>"
                 + "".join(f"<li><b>{_html.escape(t)}</b>: {_html.escape(x)}</li>" for t, x in threats) + "</ul>")
        md += "\nThreat model of each adversarial column:\n\n" + "\n".join(f"- **{t}**: {x}" for t, x in threats) + "\n"
    return Section(table.title, html, md)


def grids_section(runs: list[ModelRun]) -> Section | None:
    grids = [g for g in (corruption_grid(r) for r in runs) if g is not None]
    if not grids:
        return None
    title = "Top-1 accuracy per corruption × severity (%)"
    html = (f"<h2>{title}</h2><div class='grids'>"
            + "".join(f"<div>{table_html(g, 'h3', heat=True)}</div>" for g in grids) + "</div>")
    md = f"## {title}\n\n" + "\n".join(table_markdown(g, "###") for g in grids)
    return Section(title, html, md)


def classifier_sections(runs: list[ModelRun], folder: Path, analysis_dirs=None) -> tuple[list[Section], Table]:
    tables = build_tables(runs)
    body = [summary_section(tables[0])]
    grids = grids_section(runs)
    body += [grids] if grids else []
    body += [Section(t.title, table_html(t), table_markdown(t)) for t in tables[1:]]
    for name, figs in build_sections(runs, analysis_dirs).items():
        if figs:
            body.append(figures_section(name, figs, folder))
    return body, tables[0]


def detection_report_sections(runs: list[ModelRun], folder: Path) -> list[Section]:
    """Detection results (robustune/report/detection.py) as sections."""
    from robustune.report import detection

    body = [Section(t.title, table_html(t), table_markdown(t)) for t in detection.detection_tables(runs)]
    for name, figs in detection.detection_sections(runs).items():
        if figs:
            body.append(figures_section(name, figs, folder))
    return body


def report_sections(runs: list[ModelRun], folder: Path, analysis_dirs=None,
                    extra: Sequence[Section] = (), skipped: list[tuple[str, str]] | None = None) -> list[Section]:
    """Every section of the report in order (Findings first)."""
    from robustune.report import detection

    classifiers, detectors = detection.split_runs(runs)
    body: list[Section] = []
    summary = None
    if classifiers:
        body, summary = classifier_sections(classifiers, folder, analysis_dirs)
    body += detection_report_sections(detectors, folder) if detectors else []
    body += list(extra)
    extra_lines = [f for s in extra for f in s.findings]
    lines = findings(classifiers, summary, skipped, extra_lines) if summary is not None else \
        findings([], None, skipped, extra_lines)
    return [bullets_section("Findings", lines)] + body


def _meta(runs: list[ModelRun]) -> str:
    datasets = sorted({f"{r.results.dataset.get('name', '?')}/{r.results.dataset.get('split', '?')} "
                       f"({r.results.dataset.get('n_images', '?')} images)" for r in runs})
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{len(runs)} model(s) · evaluation data: {', '.join(datasets)} · generated {when}"


def write_report(result_paths_or_dirs: Sequence[str | Path], out_path: str | Path,
                 title: str = "Robustness report",
                 analysis_dirs: Sequence[str | Path] | None = None,
                 extra_markdown: tuple[str, str] | None = None,
                 sections: Sequence[Section] = (),
                 skip_unreadable: bool = False) -> Path:
    """Write a comparison report; ``.md`` gives Markdown (+ PNG files), anything else HTML.

    Args:
        result_paths_or_dirs: results.json files, eval folders or run folders (``<run>/eval``).
        out_path: ``report.html`` (one self-contained file) or ``report.md``.
        analysis_dirs: extra folders whose PNGs are embedded (``<run>/analysis`` is found by itself).
        extra_markdown: (heading, Markdown text with tables) added as a section, e.g. a few-shot
            protocol's ``table.md``.
        sections: extra :class:`Section` s placed before the appendix (the hook for other results).
        skip_unreadable: leave out missing / unreadable results files (listed under Findings)
            instead of failing.
    """
    skipped: list[tuple[str, str]] | None = [] if skip_unreadable else None
    runs = load_runs(list(result_paths_or_dirs), skipped)
    if not runs:
        raise FileNotFoundError("no readable results.json among " + ", ".join(p for p, _ in skipped or []))
    out = Path(out_path)
    extra = list(sections)
    if extra_markdown:
        extra.append(Section(extra_markdown[0], f"<h2>{_html.escape(extra_markdown[0])}</h2>\n"
                             f"{markdown_tables_to_html(extra_markdown[1])}",
                             f"## {extra_markdown[0]}\n\n{extra_markdown[1]}\n"))
    parts = report_sections(runs, Path(f"{out.stem}_files"), analysis_dirs, extra, skipped)
    if out.suffix.lower() == ".md":
        text, files = page_markdown(title, _meta(runs), parts)
        for rel, data in files.items():
            with atomic_path(out.parent / rel) as tmp:
                tmp.write_bytes(data)
                tmp.chmod(0o644)
        write_text_atomic(out, text)
    else:
        write_text_atomic(out, page_html(title, _meta(runs), parts, runs))
    out.chmod(0o644)  # temporary files are created 0600; a report is meant to be shared
    log.info("wrote %s (%d models)", out, len(runs))
    return out


def markdown_tables_to_html(text: str) -> str:
    """Minimal Markdown → HTML for pipe tables, headings and paragraphs (no network, no package)."""
    from robustune.report.render import inline_html

    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{inline_html(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
            rows.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            rows.append([c.strip() for c in stripped.strip("|").split("|")])
            continue
        flush()
        if stripped.startswith("#"):
            level = min(6, len(stripped) - len(stripped.lstrip("#")) + 2)
            out.append(f"<h{level}>{inline_html(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped.startswith("- "):
            out.append(f"<p>• {inline_html(stripped[2:])}</p>")
        elif stripped:
            out.append(f"<p>{inline_html(stripped)}</p>")
    flush()
    return "\n".join(out)
