"""Paper-style tables of a few-shot protocol: mean ± std over seeds, base / new / harmonic mean.

Accuracies are in %; std is numpy's population std over seeds (as CoOp's ``parse_test_res``).
The base-to-new harmonic mean follows CoCoOp and FAP: HM of the seed-averaged base and new
accuracies; its ± is the std of the per-seed harmonic means.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from robustune.files import write_json, write_text_atomic
from robustune.report.seeds import mean_std_text

GroupKey = tuple[str, str, int, str]  # setting, dataset, shots, method


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), the base-to-new summary of CoCoOp and FAP (0 when both are 0)."""
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def mean_std(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float) * 100
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": arr.tolist()}


def _metric_lists(records: list[dict[str, Any]], name: str) -> dict[str, list[float]]:
    """'natural' and 'pgd <eps>' → per-seed accuracies of evaluation ``name``."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ev = r["evals"][name]
        out["natural"].append(ev["natural"])
        for eps, acc in ev["pgd"].items():
            out[f"pgd {eps}"].append(acc)
        for key, acc in ev.get("robust", {}).items():
            out[key].append(acc)
    return out


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setting, dataset, shots, method) with mean ± std over its seeds."""
    groups: dict[GroupKey, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["setting"], r["dataset"], int(r["shots"]), r["method"])].append(r)
    rows = []
    for (setting, dataset, shots, method), recs in groups.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        names = list(recs[0]["evals"])
        metrics = {n: {m: mean_std(v) for m, v in _metric_lists(recs, n).items()} for n in names}
        if setting == "base2new":
            metrics["hm"] = _harmonic_rows(recs)
        if setting == "cross" and len(names) > 1:
            metrics["targets_average"] = _target_average(recs, names[1:])
        rows.append({"setting": setting, "dataset": dataset, "shots": shots, "method": method,
                     "seeds": [r["seed"] for r in recs], "metrics": metrics})
    return rows


def _harmonic_rows(recs: list[dict[str, Any]]) -> dict[str, Any]:
    base, new = _metric_lists(recs, "base"), _metric_lists(recs, "new")
    out = {}
    for m in base:
        per_seed = [harmonic_mean(b, n) for b, n in zip(base[m], new[m])]
        stats = mean_std(per_seed)
        stats["hm_of_means"] = harmonic_mean(float(np.mean(base[m])), float(np.mean(new[m]))) * 100
        out[m] = stats
    return out


def _target_average(recs: list[dict[str, Any]], targets: list[str]) -> dict[str, Any]:
    lists = [_metric_lists(recs, t) for t in targets]
    return {m: mean_std([float(np.mean([lst[m][i] for lst in lists])) for i in range(len(recs))])
            for m in lists[0]}


def _fmt(stats: dict[str, Any], key: str = "mean") -> str:
    """``mean ± std``; a single seed has no spread, so it shows the value alone (no "± 0.0")."""
    return mean_std_text(stats[key], stats["std"], 1 if len(stats.get("values", [])) == 1 else 2)


def _metric_names(rows: list[dict[str, Any]], name: str) -> list[str]:
    return list(rows[0]["metrics"][name]) if rows else []


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """Markdown: one table per setting (accuracy in %, mean ± std over seeds)."""
    parts = []
    by_setting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_setting[row["setting"]].append(row)
    for setting in ("fewshot", "base2new", "cross"):
        # stable: methods stay in the order the protocol ran them (e.g. zero-shot, CoOp, FAP)
        srows = sorted(by_setting.get(setting, []), key=lambda r: (r["dataset"], r["shots"]))
        if srows:
            parts.append(_SECTIONS[setting](srows))
    return "\n\n".join(parts) + "\n"


def _fewshot_table(rows: list[dict[str, Any]]) -> str:
    metrics = _metric_names(rows, "all")
    head = ["Dataset", "Shots", "Method", "Seeds", *[_label(m) for m in metrics]]
    lines = ["### Few-shot (all classes)", "", _row(head), _row(["---"] * len(head))]
    for r in rows:
        lines.append(_row([r["dataset"], r["shots"], r["method"], len(r["seeds"]),
                           *[_fmt(r["metrics"]["all"][m]) for m in metrics]]))
    return "\n".join(lines)


def _base2new_table(rows: list[dict[str, Any]]) -> str:
    metrics = _metric_names(rows, "base")
    head = ["Dataset", "Shots", "Method", "Seeds"]
    for m in metrics:
        tag = "nat" if m == "natural" else _label(m)
        head += [f"Base {tag}", f"New {tag}", f"HM {tag}"]
    lines = ["### Base-to-new", "", _row(head), _row(["---"] * len(head))]
    for r in rows:
        cells: list[Any] = [r["dataset"], r["shots"], r["method"], len(r["seeds"])]
        for m in metrics:
            cells += [_fmt(r["metrics"]["base"][m]), _fmt(r["metrics"]["new"][m]),
                      _fmt(r["metrics"]["hm"][m], "hm_of_means")]
        lines.append(_row(cells))
    return "\n".join(lines)


def _cross_table(rows: list[dict[str, Any]]) -> str:
    lines = ["### Cross-dataset (trained on the source, first evaluation row)", ""]
    head = ["Source", "Shots", "Method", "Seeds", "Evaluated on", "Natural", "Robust"]
    lines += [_row(head), _row(["---"] * len(head))]
    for r in rows:
        for name, metrics in r["metrics"].items():
            label = "average of targets" if name == "targets_average" else name
            robust = " / ".join(f"{_label(m)}: {_fmt(s)}" for m, s in metrics.items() if m != "natural")
            lines.append(_row([r["dataset"], r["shots"], r["method"], len(r["seeds"]), label,
                               _fmt(metrics["natural"]), robust]))
    return "\n".join(lines)


_SECTIONS = {"fewshot": _fewshot_table, "base2new": _base2new_table, "cross": _cross_table}


def _label(metric: str) -> str:
    """Column label: "Natural", "PGD 1/255", or an extra suite's cell key as is."""
    if metric == "natural":
        return "Natural"
    return "PGD" + metric[3:] if metric.startswith("pgd ") else metric


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_tables(records: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """``table.json`` (rows with per-seed values) and ``table.md`` in ``out_dir`` (atomic writes)."""
    rows = summarise(records)
    md, js = Path(out_dir) / "table.md", Path(out_dir) / "table.json"
    write_json(js, {"rows": rows, "cells": records})
    write_text_atomic(md, markdown_tables(rows))
    return md, js
