"""Per-severity tables from grids of runs (``robustune ablate`` / ``robustune reproduce`` folders).

Classification (:func:`severity_tables`): at one severity, per row of the grid, mean ± std over
seeds of clean accuracy, mean corruption accuracy over the 15 common corruptions, mCE at that
severity (CE_c = error_c / reference error_c, the reference being one row, e.g. the unchanged ERM
model; mCE = 100 · mean_c CE_c) and motion blur's accuracy; and per-seed paired differences of each
row against chosen rows (each row minus the other at the same seed; mean ± sample std over the
common seeds, and each seed's difference).

Detection (:func:`detection_severity_table`): per method, clean mAP, the mean mAP over the 15
common corruptions at each severity present, and mPC restricted to each corruption family.

Both read rows as the ablation machinery records them: ``{"values", "seed", "metrics"}`` with
metric columns ``"<cell key> [<metric>]"`` — an ``ablation.json`` or, for cells run by several
processes at once, every ``<cell>/eval/results.json`` under a folder (:func:`read_rows`).
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any, Iterable

from robustune.corruptions.registry import COMMON_CORRUPTIONS, SUBSETS
from robustune.eval.corruption_metrics import ReferenceErrors, summarize_corruptions
from robustune.eval.ood_suites import corruption_key, parse_corruption_key
from robustune.report.seeds import markdown_table, mean_std_text, seed_mean_std, seeds_text

log = logging.getLogger(__name__)
BASELINE = "method=none"  # the unchanged starting model: the CE reference, not a row to pair
FAMILIES = {name: SUBSETS[name] for name in ("noise", "blur", "weather", "digital")}


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an ``ablation.json``, or of every ``<key=value__...__seed=N>/eval/results.json``
    under a folder (an ``eval`` folder of the unchanged model counts once per name)."""
    path = Path(path)
    if path.is_file():
        return json.loads(path.read_text())["rows"]
    rows = []
    for res in sorted(path.glob("*/eval/results.json")):
        parts = dict(p.split("=", 1) for p in res.parent.parent.name.split("__") if "=" in p)
        seed = int(parts.pop("seed", 0))
        cells = json.loads(res.read_text())["cells"]
        rows.append({"values": parts, "seed": seed,
                     "metrics": {f"{k} [{c['metric']}]": c["value"] for k, c in cells.items()}})
    if not rows:
        raise FileNotFoundError(f"no ablation.json nor */eval/results.json in {path}")
    return rows


def label_of(values: dict[str, str]) -> str:
    """A row's label: ``key=value`` pairs joined by ``, `` (e.g. ``method=gfn, k=5``)."""
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _errors(metrics: dict, severity: int) -> dict[str, dict[int, float]]:
    """corruption → {severity: top-1 error} of one row's metric columns."""
    out = {}
    for c in COMMON_CORRUPTIONS:
        key = f"{corruption_key(c, severity)} [top1_accuracy]"
        if key not in metrics:
            raise KeyError(f"{key} missing: evaluate the run on severity {severity} first")
        out[c] = {severity: 1 - metrics[key]}
    return out


def row_metrics(metrics: dict, reference: dict, severity: int) -> dict[str, float]:
    """clean, mean corruption accuracy, mCE (vs ``reference``'s errors) and motion blur, in %."""
    errors = _errors(metrics, severity)
    summary = summarize_corruptions(errors, reference=ReferenceErrors("reference row", _errors(reference, severity)))
    return {"clean": 100 * metrics["clean [top1_accuracy]"],
            "mean_corruption_acc": 100 * summary.mean_corruption_accuracy,
            "mCE": summary.mce, "motion_blur": 100 * (1 - errors["motion_blur"][severity])}


def per_seed(rows: Iterable[dict[str, Any]], reference: dict, severity: int) -> dict[str, dict[int, dict]]:
    """row label → seed → :func:`row_metrics`; a row not evaluated at ``severity`` is left out (logged)."""
    groups: dict[str, dict[int, dict]] = {}
    for row in rows:
        label = label_of(row["values"])
        try:
            groups.setdefault(label, {})[row["seed"]] = row_metrics(row["metrics"], reference, severity)
        except KeyError as exc:
            log.warning("left out %s seed %s: %s", label, row["seed"], exc.args[0])
    return {k: v for k, v in groups.items() if v}


def paired(groups: dict[str, dict[int, dict]], against: str) -> list[dict]:
    """Every other row minus ``against`` per common seed: mean ± sample std of clean, mean corruption
    accuracy and mCE, and each seed's difference."""
    if against not in groups:
        raise ValueError(f"paired row {against!r} is not in the table; rows: {', '.join(groups)}")
    base, out = groups[against], []
    for label, seeds in groups.items():
        common = sorted(set(seeds) & set(base))
        if label in (against, BASELINE) or not common:
            continue
        entry: dict[str, Any] = {"row": label, "against": against, "seeds": common}
        for k in ("clean", "mean_corruption_acc", "mCE"):
            d = [seeds[s][k] - base[s][k] for s in common]
            mean, std = seed_mean_std(d)
            entry[k] = {"mean": mean, "std": std, "per_seed": d}
        out.append(entry)
    return out


def summarise(groups: dict[str, dict[int, dict]]) -> list[dict]:
    out = []
    for label, by_seed in groups.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        entry: dict[str, Any] = {"row": label, "seeds": len(rows)}
        for k in rows[0]:
            mean, std = seed_mean_std([r[k] for r in rows])
            entry[k] = {"mean": mean, "std": std}
        out.append(entry)
    return out


def markdown(rows: list[dict], severity: int) -> str:
    cols = ["clean", "mean_corruption_acc", "mCE", "motion_blur"]
    head = ["row", "clean acc", f"mean corruption acc (sev. {severity})", f"mCE ↓ (sev. {severity})",
            f"motion blur sev. {severity} acc", "seeds"]
    return markdown_table(head, [[r["row"], *[mean_std_text(r[c]["mean"], r[c]["std"], r["seeds"]) for c in cols],
                                  r["seeds"]] for r in rows])


def paired_markdown(rows: list[dict]) -> str:
    head = ["row", "vs", "Δ clean", "Δ mean corr. acc", "Δ mCE (per seed)", "seeds"]
    table = []
    for r in rows:
        cell = [f"{r[k]['mean']:+.1f} ± {r[k]['std']:.1f}" for k in ("clean", "mean_corruption_acc", "mCE")]
        cell[-1] += " (" + ", ".join(f"{d:+.1f}" for d in r["mCE"]["per_seed"]) + ")"
        table.append([r["row"], r["against"], *cell, str(len(r["seeds"]))])
    return markdown_table(head, table)


def severity_tables(rows: list[dict[str, Any]], reference: dict, severity: int,
                    paired_against: Iterable[str] = ()) -> tuple[str, dict]:
    """Markdown and record of one severity: the rows' table, then the paired differences.

    ``reference`` is the metric columns of the row every CE is normalised by; ``paired_against``
    names rows (labels such as ``method=nbr``) every other row is compared with, seed by seed.
    """
    groups = per_seed(rows, reference, severity)
    table = summarise(groups)
    diffs = [d for against in paired_against for d in paired(groups, against)]
    md = markdown(table, severity)
    if diffs:
        md += "\n\nPaired per-seed differences (row − vs, same seed; points):\n\n" + paired_markdown(diffs)
    return md + "\n", {"severity": severity, "rows": table, "paired": diffs}


def detection_run_metrics(cells: dict) -> dict[str, float]:
    """clean, sev<s> (mean over the common corruptions at severity s), mPC per family, for one run."""
    per: dict[tuple[str, int], float] = {}
    for key, cell in cells.items():
        parsed = parse_corruption_key(key)
        if parsed is not None and parsed[0] in COMMON_CORRUPTIONS:
            per[parsed] = cell["value"]
    severities = sorted({s for _, s in per})
    missing = [f"{c}/{s}" for c in COMMON_CORRUPTIONS for s in severities if (c, s) not in per]
    if missing or not per or "clean" not in cells:
        raise KeyError(f"{len(missing)} corruption cell(s) or the clean cell missing, e.g. {(missing or ['clean'])[0]}")
    out = {"clean": cells["clean"]["value"]}
    for s in severities:
        out[f"sev{s}"] = statistics.fmean(per[(c, s)] for c in COMMON_CORRUPTIONS)
    for family, names in FAMILIES.items():
        out[family] = statistics.fmean(statistics.fmean(per[(c, s)] for s in severities) for c in names)
    return out


def detection_severity_table(folder: str | Path) -> tuple[str, dict[str, list[dict[str, float]]]]:
    """Markdown (values in %, mean ± std over seeds) and per-method runs of every
    ``<cell>/eval/results.json`` under ``folder``; an incomplete evaluation is left out (logged)."""
    groups: dict[str, list[dict[str, float]]] = {}
    for path in sorted(Path(folder).glob("*/eval/results.json")):
        name = path.parent.parent.name
        values = dict(p.split("=", 1) for p in name.split("__") if "=" in p)
        values.pop("seed", None)
        try:
            groups.setdefault(label_of(values), []).append(detection_run_metrics(json.loads(path.read_text())["cells"]))
        except KeyError as exc:
            log.warning("left out %s: %s", path, exc.args[0])
    if not groups:
        raise FileNotFoundError(f"no complete <cell>/eval/results.json under {folder}")
    columns = list(next(iter(groups.values()))[0])
    table = [[row, *[seeds_text([100 * r[c] for r in runs if c in r]) for c in columns], len(runs)]
             for row, runs in groups.items()]
    return markdown_table(["row", *columns, "seeds"], table) + "\n", groups
