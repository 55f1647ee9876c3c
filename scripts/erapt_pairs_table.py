"""One base-to-new table from the per-method protocol folders of scripts/erapt_pairs_results.sh.

Usage: ``python scripts/erapt_pairs_table.py [OUT]`` (default runs/erapt_pairs) → OUT/table/table.md
and table.json, OUT/table/autoattack.md (from scripts/erapt_pairs_autoattack.py, if run), OUT/table/weights.md
(the range of the loss weights the ER-APT runs logged at every step) (robustune.fewshot.table's format: mean ± std over seeds, HM of base and new), and
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

EQ = "FAP, equal compute (PGD-8)"
LABELS = {"a/zeroshot": "zero-shot", "f/coop": "CoOp (clean)", "a/fap": "FAP", "b/fap": EQ,
          "d/erapt": "ER-APT", "e/erapt": "ER-APT w/o evolution", "c/erapt": "ER-APT w/o dyn. weighting"}


PAIRS = [("ER-APT", "FAP"), ("ER-APT", EQ), ("ER-APT", "ER-APT w/o evolution"),
         ("ER-APT", "ER-APT w/o dyn. weighting"), (EQ, "FAP"), ("ER-APT w/o evolution", "FAP"),
         ("FAP", "CoOp (clean)"), ("ER-APT", "CoOp (clean)")]
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


def autoattack_table(out: Path) -> str:
    """Markdown rows of AutoAttack's robust accuracy (each cell's autoattack.json), per method and seed."""
    data: dict = {}
    for path in sorted(out.glob("*/base2new/digits_pairs/16shot/*/seed*/autoattack.json")):
        cell = path.parent
        data.setdefault(f"{cell.parents[4].name}/{cell.parent.name}", {})[cell.name[4:]] = json.loads(path.read_text())
    if not data:
        return ""
    lines = ["| method | seed | n per side | AA base | AA new | AA HM |", "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        for seed, r in sorted(data.get(key, {}).items()):
            lines.append(f"| {label} | {seed} | {r['base']['n']} | {100 * r['base']['robust']:.1f} | "
                         f"{100 * r['new']['robust']:.1f} | {100 * r['hm']:.1f} |")
    return "\n".join(lines) + "\n"


def weights_table(out: Path) -> str:
    """Range of the logged loss weights (each run's weights.jsonl, every step) per method: min–max over
    all steps of all seeds, and the mean over seeds of each run's own max − min of w_adv."""
    lines = ["| method | runs | w_nat min–max | w_adv min–max | w_adv range per run (mean) | collapses |",
             "|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        folder, method = key.split("/")
        runs = []
        for path in sorted((out / folder).glob(f"base2new/digits_pairs/16shot/{method}/seed*/weights.jsonl")):
            rows = {}
            for line in path.read_text().splitlines():
                row = json.loads(line)
                rows[row["step"]] = row  # after a resume the last line of a step wins
            runs.append(list(rows.values()))
        if not runs:
            continue
        nat = [r["w_nat"] for run in runs for r in run]
        adv = [r["w_adv"] for run in runs for r in run]
        spread = np.mean([max(r["w_adv"] for r in run) - min(r["w_adv"] for r in run) for run in runs])
        collapses = sum(int(run[-1]["collapses"]) for run in runs)
        lines.append(f"| {label} | {len(runs)} | {min(nat):.2f}–{max(nat):.2f} | {min(adv):.2f}–{max(adv):.2f} | "
                     f"{spread:.2f} | {collapses} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


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
    weights = weights_table(out)
    if weights:
        write_text_atomic(out / "table" / "weights.md", weights)
        print(weights)
    aa = autoattack_table(out)
    if aa:
        write_text_atomic(out / "table" / "autoattack.md", aa)
        print(aa)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/erapt_pairs"))
