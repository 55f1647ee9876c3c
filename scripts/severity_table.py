"""One severity's corruption metrics from ``robustune ablate`` tables, mean ± std over seeds.

    python scripts/severity_table.py REFERENCE ABLATION... --severity 1 [--out F.json]

Each REFERENCE / ABLATION is an ``ablation.json`` or an ablate folder (then every
``<cell>/eval/results.json`` under it is read, e.g. cells run by several ablate processes at once).
They keep every evaluated cell of every run, so the metrics of one severity can be read back
without evaluating again: mean corruption accuracy over the 15 common corruptions at
that severity, mCE at that severity (CE_c = error_c / reference error_c, the reference being the
first file's first row, e.g. the unchanged ERM model; mCE = 100 · mean_c CE_c) and motion blur's
accuracy. Prints a Markdown table (values in %, mean ± std over seeds, n seeds per row).
``--paired ROW`` (repeatable) adds a table of per-seed paired differences, each row minus ROW at the
same seed (mean ± std over the common seeds, and each seed's difference), for clean accuracy, mean
corruption accuracy and mCE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from robustune.corruptions.registry import COMMON_CORRUPTIONS
from robustune.eval.corruption_metrics import ReferenceErrors, summarize_corruptions
from robustune.eval.ood_suites import corruption_key
from robustune.files import write_json
from robustune.report.seeds import markdown_table, mean_std_text, seed_mean_std


def _errors(metrics: dict, severity: int) -> dict[str, dict[int, float]]:
    """corruption → {severity: top-1 error} of one row's metric columns."""
    out = {}
    for c in COMMON_CORRUPTIONS:
        key = f"{corruption_key(c, severity)} [top1_accuracy]"
        if key not in metrics:
            raise KeyError(f"{key} missing: evaluate the run on severity {severity} first")
        out[c] = {severity: 1 - metrics[key]}
    return out


def row_metrics(metrics: dict, ref: dict, severity: int) -> dict[str, float]:
    errors = _errors(metrics, severity)
    summary = summarize_corruptions(errors, reference=ReferenceErrors("reference row", _errors(ref, severity)))
    return {"clean": 100 * metrics["clean [top1_accuracy]"],
            "mean_corruption_acc": 100 * summary.mean_corruption_accuracy,
            "mCE": summary.mce, "motion_blur": 100 * (1 - errors["motion_blur"][severity])}


def read_rows(path: Path) -> dict:
    """An ablation.json, or the rows of an ablate folder's ``<key=value__...__seed=N>/eval/results.json``."""
    if path.is_file():
        return json.loads(path.read_text())
    rows = []
    for res in sorted(path.glob("*/eval/results.json")):
        parts = dict(p.split("=", 1) for p in res.parent.parent.name.split("__"))
        seed = int(parts.pop("seed"))
        cells = json.loads(res.read_text())["cells"]
        rows.append({"values": parts, "seed": seed,
                     "metrics": {f"{k} [{c['metric']}]": c["value"] for k, c in cells.items()}})
    if not rows:
        raise FileNotFoundError(f"no ablation.json nor */eval/results.json in {path}")
    return {"rows": rows}


def per_seed(files: list[Path], severity: int) -> dict[str, dict[int, dict]]:
    """row label → seed → metrics (the reference is the first file's first row)."""
    tables = [read_rows(f) for f in files]
    ref = tables[0]["rows"][0]["metrics"]
    groups: dict[str, dict[int, dict]] = {}
    for table in tables:
        for row in table["rows"]:
            label = ", ".join(f"{k}={v}" for k, v in row["values"].items())
            try:
                groups.setdefault(label, {})[row["seed"]] = row_metrics(row["metrics"], ref, severity)
            except KeyError as exc:  # a cell not evaluated at this severity (yet): left out, said so
                print(f"skipped {label} seed {row['seed']}: {exc}", file=sys.stderr)
    return groups


def paired(groups: dict[str, dict[int, dict]], against: str) -> list[dict]:
    """Per row but the reference (the first row): (row − ``against``) per common seed, mean ± std,
    for clean, mean corr. acc and mCE."""
    if against not in groups:
        raise SystemExit(f"--paired {against!r}: no such row; rows: {', '.join(groups)}")
    base, out = groups[against], []
    for label, seeds in list(groups.items())[1:]:
        common = sorted(set(seeds) & set(base))
        if label == against or not common:
            continue
        entry = {"row": label, "against": against, "seeds": common}
        for k in ("clean", "mean_corruption_acc", "mCE"):
            d = [seeds[s][k] - base[s][k] for s in common]
            mean, std = seed_mean_std(d)
            entry[k] = {"mean": mean, "std": std, "per_seed": d}
        out.append(entry)
    return out


def paired_markdown(rows: list[dict]) -> str:
    head = ["row", "vs", "Δ clean", "Δ mean corr. acc", "Δ mCE (per seed)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cell = [f"{r[k]['mean']:+.1f} ± {r[k]['std']:.1f}" for k in ("clean", "mean_corruption_acc", "mCE")]
        cell[-1] += " (" + ", ".join(f"{d:+.1f}" for d in r["mCE"]["per_seed"]) + ")"
        lines.append(f"| {r['row']} | {r['against']} | " + " | ".join(cell) + f" | {len(r['seeds'])} |")
    return "\n".join(lines)


def summarise(groups: dict[str, dict[int, dict]]) -> list[dict]:
    out = []
    for label, by_seed in groups.items():
        rows = [by_seed[s] for s in sorted(by_seed)]
        entry = {"row": label, "seeds": len(rows)}
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+", help="ablation.json files; the first one's first row is the reference")
    ap.add_argument("--severity", type=int, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--paired", action="append", default=[], help="row label to subtract per seed (repeatable)")
    args = ap.parse_args()
    groups = per_seed(args.files, args.severity)
    rows = summarise(groups)
    diffs = [d for against in args.paired for d in paired(groups, against)]
    if args.out:
        write_json(args.out, {"severity": args.severity, "reference": str(args.files[0]), "rows": rows,
                              "paired": diffs})
    print(markdown(rows, args.severity))
    if diffs:
        print("\nPaired per-seed differences (row − vs, same seed; points):\n")
        print(paired_markdown(diffs))


if __name__ == "__main__":
    main()
