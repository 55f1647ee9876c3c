"""Where corruption-induced mistakes land, per model (GFN Sec. 3.1, Fig. 2, measured on every model).

GFN's claim is a mechanism: fine-tuning on neighbour-targeted perturbations with a loss that
penalises near-class confusion should move the mistakes a corruption causes *off the nearest
classes*, and should help most on the corruptions whose mistakes land on neighbours. This section
measures both for every classifier of a report that has aligned per-image corruption outcomes
(``per_sample/`` with each image's clean source index, written by ``robustune eval``):

- the error-rank distribution of its corruption-induced mistakes (right when clean, wrong when
  corrupted), every model ranked by **one** class similarity (Eq. 4) so the distributions compare:
  the first one saved with a compared run (``similarity.safetensors``; GFN runs save their starting
  model's), pooled over the corruption cells;
- "neighbour corruptions": those whose mistakes, for the report's **first** model (the reference,
  e.g. the starting model), land on ranks 1..k at least ``factor`` × as often as uniform
  (k / (C − 1)); ours, k = 20 and factor 2 by default;
- mCE over the neighbour corruptions and over the others apart, each CE normalised by the first
  model (CE_c = Σ_s E_c,s / Σ_s E^ref_c,s over the severities both have; reference = 100).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustune.analysis.error_ranks import ErrorRankHistogram, corruption_error_ranks
from robustune.eval.results import Cell, load_per_sample
from robustune.report.render import Section, table_html, table_markdown
from robustune.report.tables import Column, ModelRun, Table

log = logging.getLogger(__name__)

SUITE = "corruptions"


@dataclass
class RunMistakes:
    """One model's induced-mistake histograms per corruption cell and its per-corruption errors."""

    name: str
    hists: dict[tuple[str, int], ErrorRankHistogram] = field(default_factory=dict)
    errors: dict[str, dict[int, float]] = field(default_factory=dict)


def find_similarity(runs: list[ModelRun]):
    """(ClassSimilarity, run name) of the first compared run that saved one, else (None, None)."""
    from robustune.gfn.similarity import ClassSimilarity

    for run in runs:
        for folder in (run.folder, run.folder.parent):
            if (folder / "similarity.safetensors").is_file() and (folder / "similarity.json").is_file():
                return ClassSimilarity.load(folder), run.name
    return None, None


def run_mistakes(run: ModelRun, ranks: torch.Tensor) -> RunMistakes | None:
    """Histograms from ``per_sample/``; None when the clean or any corruption cell lacks aligned outcomes."""
    out = RunMistakes(run.name)
    cells = {k: c for k, c in run.results.cells.items() if c.suite == SUITE and c.metric == "top1_accuracy"}
    if "clean" not in run.results.cells or not cells:
        return None
    try:
        clean = load_per_sample(run.folder, "clean")
        for key, cell in cells.items():
            saved = load_per_sample(run.folder, key)
            if "source" not in saved or "pred" not in saved:
                return None
            c, s = cell.details["corruption"], int(cell.details["severity"])
            index = saved["source"].long()
            out.hists[(c, s)] = corruption_error_ranks(clean["pred"][index], saved["pred"], saved["label"], ranks,
                                                       c, s, run.name)
            out.errors.setdefault(c, {})[s] = 1 - cell.value
    except (OSError, KeyError, IndexError, RuntimeError) as exc:
        log.info("%s: no aligned per-sample corruption outcomes (%s); left out of the error-rank section",
                 run.name, exc)
        return None
    return out


def pooled(hists: list[ErrorRankHistogram]) -> ErrorRankHistogram:
    counts = [sum(c) for c in zip(*(h.counts for h in hists))]
    return ErrorRankHistogram("all", None, hists[0].num_classes, counts, sum(h.n_clean_correct for h in hists),
                              sum(h.n_mistakes for h in hists))


def neighbour_corruptions(ref: RunMistakes, k: int = 20, factor: float = 2.0) -> list[str]:
    """Corruptions whose reference mistakes land on ranks 1..k ≥ ``factor`` × uniform (pooled over severities)."""
    names = sorted({c for c, _ in ref.hists})
    out = []
    for c in names:
        h = pooled([h for (name, _), h in ref.hists.items() if name == c])
        wrong = h.num_classes - 1
        if h.n_mistakes and h.top_k_fraction(k) >= factor * min(k, wrong) / wrong:
            out.append(c)
    return out


def group_mce(errors: dict[str, dict[int, float]], ref: dict[str, dict[int, float]], names: list[str]) -> float | None:
    """100 · mean over ``names`` of Σ_s E_c,s / Σ_s E^ref_c,s (severities both have); None if none usable."""
    ces = []
    for c in names:
        sev = sorted(set(errors.get(c, {})) & set(ref.get(c, {})))
        denom = sum(ref[c][s] for s in sev)
        if sev and denom > 0:
            ces.append(sum(errors[c][s] for s in sev) / denom)
    return 100 * statistics.fmean(ces) if ces else None


def _cell(key: str, value: float | None, n: int | None = None) -> dict[str, Cell]:
    return {} if value is None else {key: Cell(key, "error_ranks", "percent", value, n=n)}


def mechanism_table(mistakes: list[RunMistakes], k: int = 20, factor: float = 2.0) -> tuple[Table, list[str]]:
    """Rows: uniform, then each model (n = its induced mistakes). Shares of induced mistakes on ranks 1 / 1–5 / 1–k, mean rank,
    mCE over the neighbour corruptions and over the others (first model = 100)."""
    ref = mistakes[0]
    near = neighbour_corruptions(ref, k, factor)
    others = sorted({c for c, _ in ref.hists} - set(near))
    cols = [Column("r1", "rank 1 (%)", "percent", False),
            Column("r5", "ranks 1–5 (%)", "percent", False), Column("rk", f"ranks 1–{k} (%)", "percent", False),
            Column("mean", "mean rank", "percent", False),
            Column("mce_near", f"mCE, {len(near)} neighbour corruptions", "mCE", False),
            Column("mce_other", f"mCE, {len(others)} other corruptions", "mCE", False)]
    wrong = next(iter(ref.hists.values())).num_classes - 1
    rows: dict[str, dict[str, Cell]] = {"uniform": {
        **_cell("r1", 100 / wrong), **_cell("r5", 100 * min(5, wrong) / wrong),
        **_cell("rk", 100 * min(k, wrong) / wrong), **_cell("mean", (wrong + 1) / 2)}}
    for m in mistakes:
        h = pooled(list(m.hists.values()))
        rows[f"{m.name} (n = {h.n_mistakes})"] = {**_cell("r1", 100 * h.top_k_fraction(1)),
                        **_cell("r5", 100 * h.top_k_fraction(5)), **_cell("rk", 100 * h.top_k_fraction(k)),
                        **_cell("mean", h.mean_rank), **_cell("mce_near", group_mce(m.errors, ref.errors, near)),
                        **_cell("mce_other", group_mce(m.errors, ref.errors, others))}
    return Table("Where corruption-induced mistakes land (GFN Sec. 3.1, per model)", cols, rows,
                 row_header="model"), near


def error_rank_section(runs: list[ModelRun], k: int = 20, factor: float = 2.0) -> Section | None:
    """The section, when two or more classifiers have aligned outcomes and a class similarity exists."""
    sim, source = find_similarity(runs)
    if sim is None:
        return None
    mistakes = [m for m in (run_mistakes(r, sim.ranks) for r in runs) if m is not None and m.hists]
    if len(mistakes) < 2 or len({len(h.counts) for m in mistakes for h in m.hists.values()}) != 1:
        return None
    k = min(k, sim.ranks.shape[0] - 1)
    table, near = mechanism_table(mistakes, k, factor)
    table.note = (f"Induced mistakes: right when clean, wrong when corrupted, pooled over every corruption cell; "
                  f"every model ranked by the class similarity saved with `{source}` (Eq. 4). Neighbour "
                  f"corruptions: those whose mistakes for the first model (`{mistakes[0].name}`, the reference, "
                  f"mCE = 100) land on ranks 1–{k} at least {factor:g}× as often as uniform: "
                  f"{', '.join(near) or 'none'}. mCE per group: 100 · mean over its corruptions of "
                  f"Σ_s E / Σ_s E_ref.")
    return Section(table.title, table_html(table), table_markdown(table))
