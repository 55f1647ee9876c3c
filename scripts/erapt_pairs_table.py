"""One base-to-new table from the per-method protocol folders of scripts/erapt_pairs_results.sh.

Usage: ``python scripts/erapt_pairs_table.py [OUT]`` (default runs/erapt_pairs) → OUT/table/table.md
and table.json (robustune.fewshot.table's format: mean ± std over seeds, HM of base and new).
Each sub-folder ran one method, so the few-shot label (the method's name) is replaced by the preset.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from robustune.fewshot.table import write_tables

LABELS = {"a/zeroshot": "zero-shot", "a/fap": "FAP", "b/fap": "FAP, equal compute (PGD-4)",
          "d/erapt": "ER-APT", "e/erapt": "ER-APT w/o evolution", "c/erapt": "ER-APT w/o dyn. weighting"}


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


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/erapt_pairs"))
