"""Detection mAP per severity and per corruption family from ``robustune ablate`` folders.

    python scripts/det_severity_table.py ABLATE_DIR [--out F.json]

Reads every ``<cell>/eval/results.json`` under ABLATE_DIR (e.g. runs/det_results/table, cells run
by several ablate processes at once), groups the runs by method and prints a Markdown table, values
in % as mean ± std over seeds: clean mAP, the mean mAP over the 15 common corruptions at each
severity present, and mPC restricted to each corruption family (noise, blur, weather, digital).
Runs whose evaluation is incomplete are left out, each named on stderr; the seeds column counts
the runs in each row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from robustune.corruptions.registry import COMMON_CORRUPTIONS, SUBSETS
from robustune.eval.ood_suites import parse_corruption_key
from robustune.files import write_json
from robustune.report.seeds import markdown_table, seeds_text

FAMILIES = {name: SUBSETS[name] for name in ("noise", "blur", "weather", "digital")}


def run_metrics(cells: dict) -> dict[str, float]:
    """clean, sev<s> (mean over corruptions at severity s), mPC per family, for one run."""
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    groups: dict[str, list[dict[str, float]]] = {}
    for path in sorted(args.folder.glob("*/eval/results.json")):
        data = json.loads(path.read_text())
        method = path.parent.parent.name.split("__")[0].removeprefix("method=")
        try:
            groups.setdefault(method, []).append(run_metrics(data["cells"]))
        except KeyError as exc:  # a run still being evaluated (or never finished): not in the table
            print(f"skipped {path}: {exc.args[0]}", file=sys.stderr)
    if not groups:
        raise SystemExit(f"no <cell>/eval/results.json under {args.folder}")
    columns = list(next(iter(groups.values()))[0])
    table = [[method, *[seeds_text([100 * r[c] for r in rows]) for c in columns], len(rows)]
             for method, rows in groups.items()]
    print(markdown_table(["method", *columns, "seeds"], table))
    if args.out:
        write_json(args.out, {m: rows for m, rows in groups.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
