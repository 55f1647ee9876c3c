"""One base-to-new table from the per-method protocol folders of scripts/erapt_pairs_results.sh.

Usage: ``python scripts/erapt_pairs_table.py [OUT]`` (default runs/erapt_pairs) → OUT/table/table.md
and table.json (robustune.fewshot.table's format: mean ± std over seeds, HM of base and new), and
OUT/table/paired.md: per-seed differences of the HM between methods trained on the same seed
(same shots, same test images), mean ± std over the seeds they share and how many are > 0 — the
seed-to-seed noise of a comparison is the std of the paired difference, not the two rows' stds.
The differences are robustune's (``robustune compare A_FOLDER B_FOLDER``: per-seed paired
differences of few-shot seed folders); this script only lays them out for these six pairs.
Each sub-folder ran one method, so the few-shot label (the method's name) is replaced by the preset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robustune.fewshot.table import write_tables
from robustune.files import write_text_atomic

LABELS = {"a/zeroshot": "zero-shot", "a/fap": "FAP", "b/fap": "FAP, equal compute (PGD-4)",
          "d/erapt": "ER-APT", "e/erapt": "ER-APT w/o evolution", "c/erapt": "ER-APT w/o dyn. weighting"}


PAIRS = [("ER-APT", "FAP"), ("ER-APT", "FAP, equal compute (PGD-4)"), ("ER-APT", "ER-APT w/o evolution"),
         ("ER-APT", "ER-APT w/o dyn. weighting"), ("FAP, equal compute (PGD-4)", "FAP"),
         ("ER-APT w/o evolution", "FAP")]
METRICS = [("natural", "HM nat"), ("1/255", "HM PGD 1/255"), ("4/255", "HM PGD 4/255")]
CELL_KEYS = {"natural": "HM:clean", "1/255": "HM:pgd/Linf/eps=1/255/steps=10",
             "4/255": "HM:pgd/Linf/eps=4/255/steps=10"}


def paired_table(out: Path) -> str:
    """Per-seed paired HM differences of each pair, from robustune.report.compare.compare_seeds."""
    from robustune.report.compare import compare_seeds

    folders = {label: out / key.split("/")[0] / "base2new/digits_pairs/16shot" / key.split("/")[1]
               for key, label in LABELS.items()}
    lines = ["| comparison (A − B, HM points) | seeds | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for a, b in PAIRS:
        try:
            by_key = {s.key: s for s in compare_seeds(folders[a], folders[b])}
        except (ValueError, FileNotFoundError):
            continue
        cells = [by_key.get(CELL_KEYS[metric]) for metric, _ in METRICS]
        if None in cells:
            continue
        seeds = sorted(cells[0].differences)
        lines.append(f"| {a} − {b} | {','.join(map(str, seeds))} | " + " | ".join(
            f"{100 * c.mean:+.1f} ± {100 * c.std:.1f} ({c.a_better}/{len(c.differences)} > 0)" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(out: Path) -> None:
    records = []
    for key, label in LABELS.items():
        folder, method = key.split("/")
        for cell in sorted((out / folder).glob(f"base2new/digits_pairs/16shot/{method}/seed*/cell.json")):
            rec = json.loads(cell.read_text())
            records.append({**rec, "method": label})
    if not records:
        raise SystemExit(f"no finished cells under {out}: run scripts/erapt_pairs_results.sh first")
    order = list(LABELS.values())
    records.sort(key=lambda r: (order.index(r["method"]), r["seed"]))
    md, js = write_tables(records, out / "table")
    print(md.read_text() if hasattr(md, "read_text") else md)
    paired = paired_table(out)
    write_text_atomic(out / "table" / "paired.md", paired)
    print(paired)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/erapt_pairs"))
