"""Plain-text and JSON forms of :mod:`robustune.report.compare` results (the ``compare`` command)."""

from __future__ import annotations

import dataclasses
from typing import Any

from robustune.report.compare import Comparison
from robustune.report.units import PERCENT_METRICS


def _value(metric: str, v: float) -> str:
    return f"{v:.1f}" if metric in PERCENT_METRICS else f"{100 * v:.1f}%"


def _diff(metric: str, d: float) -> str:
    return f"{d:+.1f}" if metric in PERCENT_METRICS else f"{100 * d:+.1f} pt"


def _compute_lines(cmp: Comparison) -> list[str]:
    lines = []
    for label, c in cmp.compute.items():
        if not c:
            lines.append(f"  compute {label}: not recorded in run.json")
            continue
        lines.append(f"  compute {label} ({c.get('method')}): {c['forward_passes_per_step']:g} forward + "
                     f"{c['backward_passes_per_step']:g} backward passes/step, {c['seconds_per_step']:.3g} s/step"
                     + (f", {c['steps']} steps" if c.get("steps") else ""))
    if cmp.compute_note:
        lines.append(f"  ⚠ {cmp.compute_note}: the comparison is not at equal compute")
    return lines


def format_comparison(cmp: Comparison) -> str:
    """A table: cell, A, B, A − B, n, test, p (Holm-adjusted within its family), verdict."""
    lines = [f"A = {cmp.a}   B = {cmp.b}"]
    if cmp.cells:
        width = max(len(c.key) for c in cmp.cells)
        lines.append(f"  {'cell':<{width}}  {'A':>7}  {'B':>7}  {'A−B':>9}  {'n':>6}  {'test':<16}  verdict")
        for c in cmp.cells:
            ci = c.detail.get("ci95")
            extra = f" [95% CI {_diff(c.metric, ci[0])}, {_diff(c.metric, ci[1])}]" if ci else ""
            lines.append(f"  {c.key:<{width}}  {_value(c.metric, c.a):>7}  {_value(c.metric, c.b):>7}  "
                         f"{_diff(c.metric, c.difference):>9}  {c.n or '':>6}  {c.test:<16}  {c.verdict}{extra}")
        families = sorted({c.family for c in cmp.cells if c.p_adjusted is not None})
        if families:
            lines.append("  p: exact McNemar (accuracy cells), paired bootstrap over images (summaries); "
                         f"Holm-adjusted within each family ({', '.join(families)}); resolved = p < 0.05")
        else:
            lines.append("  no cell could be tested image by image here (see each verdict)")
    for s in cmp.seeds:
        per = ", ".join(f"seed {k}: {100 * v:+.1f}" for k, v in sorted(s.differences.items()))
        lines.append(f"  {s.key}: A−B {100 * s.mean:+.2f} ± {100 * s.std:.2f} pt over {len(s.differences)} seeds — A higher in "
                     f"{s.a_better}, B higher in {s.b_better} ({per})")
    return "\n".join(lines + _compute_lines(cmp))


def comparison_dict(cmp: Comparison) -> dict[str, Any]:
    out = dataclasses.asdict(cmp)
    for c, d in zip(cmp.cells, out["cells"]):
        d["difference"], d["verdict"] = c.difference, c.verdict
    for s, d in zip(cmp.seeds, out["seeds"]):
        d.update(mean=s.mean, std=s.std, a_better=s.a_better, b_better=s.b_better)
    return out
