"""``write_report``: several models' results.json side by side, as self-contained HTML or Markdown."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Sequence

from robustune.report import plots
from robustune.report.render import render_html, render_markdown
from robustune.report.tables import (
    ModelRun,
    Table,
    corruption_accuracy_table,
    corruption_ce_table,
    flip_probability_table,
    load_runs,
    summary_table,
)
from robustune.utils import write_text_atomic

log = logging.getLogger(__name__)


def build_tables(runs: list[ModelRun]) -> list[Table]:
    tables = [summary_table(runs)]
    extra = (corruption_ce_table(runs), corruption_accuracy_table(runs), flip_probability_table(runs))
    tables += [t for t in extra if t is not None]
    return tables


def build_sections(runs: list[ModelRun], analysis_dirs: Sequence[str | Path] | None = None) -> dict[str, list]:
    return {
        "Adversarial robustness": [f for f in [plots.accuracy_vs_eps_figure(runs)] if f],
        "Common corruptions": [f for f in [plots.corruption_severity_figure(runs)] if f],
        "Analyses (GFN Sec. 3.1)": plots.analysis_figures(runs, [Path(d) for d in analysis_dirs or []]),
    }


def _meta(runs: list[ModelRun]) -> str:
    datasets = sorted({f"{r.results.dataset.get('name', '?')}/{r.results.dataset.get('split', '?')} "
                       f"({r.results.dataset.get('n_images', '?')} images)" for r in runs})
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{len(runs)} model(s) · evaluation data: {', '.join(datasets)} · generated {when}"


def write_report(result_paths_or_dirs: Sequence[str | Path], out_path: str | Path,
                 title: str = "Robustness report",
                 analysis_dirs: Sequence[str | Path] | None = None,
                 extra_markdown: tuple[str, str] | None = None) -> Path:
    """Write a comparison report; ``.md`` gives Markdown (+ PNG files), anything else HTML.

    Args:
        result_paths_or_dirs: results.json files, eval folders or run folders (``<run>/eval``).
        out_path: ``report.html`` (one self-contained file) or ``report.md``.
        analysis_dirs: extra folders whose PNGs are embedded (``<run>/analysis`` is found by itself).
        extra_markdown: (heading, Markdown text with tables) appended as a last section, e.g.
            a few-shot protocol's ``table.md``.
    """
    runs = load_runs(list(result_paths_or_dirs))
    out = Path(out_path)
    from robustune.report import detection

    classifiers, detectors = detection.split_runs(runs)  # detectors: robustune/report/detection.py
    tables = (build_tables(classifiers) if classifiers else []) + detection.detection_tables(detectors)
    sections = {**build_sections(classifiers, analysis_dirs), **detection.detection_sections(detectors)}
    meta = _meta(runs)
    if out.suffix.lower() == ".md":
        text, files = render_markdown(title, tables, sections, out, meta)
        for path, data in files.items():
            from robustune.utils import atomic_path

            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        if extra_markdown:
            text += f"\n## {extra_markdown[0]}\n\n{extra_markdown[1]}\n"
        write_text_atomic(out, text)
    else:
        html = render_html(title, runs, tables, sections, meta)
        if extra_markdown:
            block = f"<h2>{_escape(extra_markdown[0])}</h2>\n{markdown_tables_to_html(extra_markdown[1])}\n"
            html = html.replace("</body>", block + "</body>", 1)
        write_text_atomic(out, html)
    out.chmod(0o644)  # temporary files are created 0600; a report is meant to be shared
    log.info("wrote %s (%d models)", out, len(runs))
    return out


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def markdown_tables_to_html(text: str) -> str:
    """Minimal Markdown → HTML for pipe tables, headings and paragraphs (no network, no package)."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            head, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
            out.append("<table><thead><tr>" + "".join(f"<th>{_escape(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in r) + "</tr>" for r in body)
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
            out.append(f"<h{level}>{_escape(stripped.lstrip('#').strip())}</h{level}>")
        elif stripped:
            out.append(f"<p>{_escape(stripped)}</p>")
    flush()
    return "\n".join(out)
