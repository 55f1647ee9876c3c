"""The steps after a table's cells (:class:`robustune.reproduce.spec.Post`; ours): per-severity
tables with per-seed paired differences, detection mAP per severity and family, GFN's Fig. 2 on
the starting model, the digit-share check, and, for few-shot tables, AutoAttack on a fixed subset,
paired differences between methods and the range of ER-APT's loss weights.

Each writes its files into the table's folder and returns a Markdown section for ``reproduce.md``;
a step whose input is not there yet (cells still running elsewhere) says so instead of failing.
They run where the table is written (the local process, or the submitting one with ``slurm``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from robustune.config import parse_number
from robustune.files import read_json, write_json, write_text_atomic
from robustune.reproduce.plan import Plan
from robustune.reproduce.spec import Post

log = logging.getLogger(__name__)


def run_post(plan: Plan) -> str:
    """Every post step of the plan's scale; their Markdown sections, joined."""
    return "".join(_STEPS[p.kind](plan, p) for p in plan.scale.post)


def _severity(plan: Plan, p: Post) -> str:
    from robustune.report.severity import label_of, read_rows, severity_tables

    base = next((c for c in plan.cells if c.stage == 0), None)
    ref_file = None if base is None else base.run_dir / "eval" / "results.json"
    if ref_file is None or not ref_file.is_file():
        return "### Per severity\n\nNot written: the baseline cell (the CE reference) is not evaluated yet.\n\n"
    reference = {f"{k} [{c['metric']}]": c["value"] for k, c in read_json(ref_file)["cells"].items()}
    rows = read_rows(plan.out / "cells")
    out = []
    for s in p.severities:
        labels = {label_of(r["values"]) for r in rows}
        md, record = severity_tables(rows, reference, s, [x for x in p.paired if x in labels])
        write_json(plan.out / f"severity_{s}.json", {**record, "reference": str(ref_file)})
        write_text_atomic(plan.out / f"severity_{s}.md", md)
        out.append(f"### Severity {s} (mCE normalised by the baseline cell; values in %, mean ± std over "
                   f"seeds)\n\n{md}\n")
    return "".join(out)


def _det_severity(plan: Plan, p: Post) -> str:
    from robustune.report.severity import detection_severity_table

    try:
        md, groups = detection_severity_table(plan.out / "cells")
    except FileNotFoundError as exc:
        return f"### Per severity and corruption family\n\nNot written: {exc}.\n\n"
    write_text_atomic(plan.out / "severity.md", md)
    write_json(plan.out / "severity.json", groups)
    return ("### Per severity and corruption family (mAP in %, mean ± std over seeds; sev<s>: mean over "
            f"the 15 corruptions at severity s; families: mPC over their corruptions)\n\n{md}\n")


def _corruption_root(plan: Plan) -> Path:
    return Path(plan.options["corruption_root"])


def _error_ranks(plan: Plan, p: Post) -> str:
    from robustune.analyze import analyze_runs

    rows = []
    for s in p.severities:
        folder = plan.out / f"fig2_s{s}"
        if not (folder / "error_rank_summary.json").is_file():
            analyze_runs([plan.prep_dir / p.model], _corruption_root(plan), folder, severity=s)
        for label, r in read_json(folder / "error_rank_summary.json").items():
            top, uni = r["top_k"], r["uniform_top_k"]
            rows.append(f"| {s} | {label} | {r['n_mistakes']} | " + " | ".join(
                f"{100 * top[k]:.1f} ({100 * uni[k]:.1f})" for k in ("1", "5", "20"))
                + f" | {r['mean_rank']:.1f} ({r['uniform_mean_rank']:.1f}) | `{folder / 'error_ranks.png'}` |")
    return ("### GFN Fig. 2: ranks of corruption-induced mistakes (the starting model's own class similarity; "
            "uniform over the wrong classes in brackets; %)\n\n"
            "| severity | model | mistakes | rank 1 | ranks 1–5 | ranks 1–20 | mean rank | histogram |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n")


def _digit_share(plan: Plan, p: Post) -> str:
    from robustune.report.digit_share import digit_share

    base = next((c for c in plan.cells if c.stage == 0), None)
    if base is None or not (base.run_dir / "eval" / "results.json").is_file():
        return "### Mistakes that keep a digit\n\nNot written: the baseline cell is not evaluated yet.\n\n"
    lines = []
    for s in p.severities:
        result = digit_share(base.run_dir / "eval", s)
        write_json(plan.out / f"fig2_s{s}" / "digit_share.json", result)
        pooled = result["pooled"]
        share = pooled["share_keeps_a_digit"]
        lines.append(f"| {s} | {pooled['n_mistakes']} | {'–' if share is None else f'{100 * share:.1f}'} | "
                     f"{100 * result['uniform_share']:.1f} |")
    return ("### Mistakes that keep one of the two digits (digits_pairs; no similarity model)\n\n"
            "| severity | corruption-induced mistakes | keep a digit (%) | uniform over 99 classes (%) |\n"
            "|---|---|---|---|\n" + "\n".join(lines) + "\n\n")


def _fewshot_cells(plan: Plan):
    return [c.fewshot for c in plan.cells if c.fewshot is not None]


def _method_folders(plan: Plan) -> dict[str, Path]:
    """Few-shot label → the folder holding its seed folders (first setting / dataset / shots)."""
    folders: dict[str, Path] = {}
    for run in _fewshot_cells(plan):
        folders.setdefault(run.method, run.run_dir.parent)
    return folders


def _autoattack(plan: Plan, p: Post) -> str:
    from robustune.fewshot.extras import autoattack_markdown, autoattack_subset

    records = autoattack_subset(_fewshot_cells(plan), p.n, parse_number(p.eps), p.seeds)
    md = autoattack_markdown(records)
    write_json(plan.out / "autoattack.json", records)
    if md:
        write_text_atomic(plan.out / "autoattack.md", md)
    return (f"### AutoAttack (standard, L∞, ε = {p.eps}) on {p.n} fixed test images per side, seeds "
            f"{', '.join(map(str, p.seeds))}\n\n{md or 'No finished cell of those seeds yet.'}\n\n")


def _fewshot_paired(plan: Plan, p: Post) -> str:
    from robustune.fewshot.extras import paired_table

    eps = plan.scale.protocol.get("eps", ("1/255",))
    steps = plan.scale.protocol.get("pgd_steps", 100)
    metrics = {"HM nat": "HM:clean", **{f"HM PGD {e}": f"HM:pgd/Linf/eps={e}/steps={steps}" for e in eps}}
    md = paired_table(_method_folders(plan), p.pairs, metrics)
    if md:
        write_text_atomic(plan.out / "paired.md", md)
    return ("### Paired per-seed differences of the harmonic mean (A − B, same seed; mean ± sample std, "
            f"seeds with A > B)\n\n{md or 'No pair has a finished seed in common yet.'}\n\n")


def _weights(plan: Plan, p: Post) -> str:
    from robustune.fewshot.extras import weights_table

    md = weights_table(_method_folders(plan))
    if md:
        write_text_atomic(plan.out / "weights.md", md)
    return f"### Loss weights logged at every step\n\n{md or 'No run logged its loss weights.'}\n\n"


_STEPS = {"severity": _severity, "det_severity": _det_severity, "error_ranks": _error_ranks,
          "digit_share": _digit_share, "autoattack": _autoattack, "fewshot_paired": _fewshot_paired,
          "weights": _weights}
