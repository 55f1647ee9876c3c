"""Share of corruption-induced mistakes on digits_pairs that keep one of the two digits.

    python scripts/pairs_digit_share.py EVAL_DIR [--severity 5] [--out FILE.json]

EVAL_DIR is an evaluation folder of a digits_pairs model with the ``clean`` and ``corruptions``
suites (its ``per_sample/`` files hold predictions and labels). A mistake is corruption-induced
when the clean image is classified right and its corrupted copy wrong (GFN Sec. 3.1). Class "ab"
shares a digit with the 18 classes "aX" and "Xb": if mistakes fell on the 99 wrong classes
uniformly, 18/99 = 18.2 % of them would keep a digit. Needs no class-similarity model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from robustune.eval.results import EvalResults, load_per_sample
from robustune.files import write_json


def digit_share(eval_dir: Path, severity: int) -> dict:
    clean = load_per_sample(eval_dir, "clean")
    cells = [k for k in EvalResults.load(eval_dir / "results.json").cells if k.endswith(f"/{severity}")
             and k.startswith("corruptions/") and k.count("/") == 2]
    out, total = {}, torch.zeros(3, dtype=torch.long)
    for key in sorted(cells):
        cell = load_per_sample(eval_dir, key)
        y, pred = cell["label"].long(), cell["pred"].long()
        if not torch.equal(y, clean["label"].long()):
            raise ValueError(f"{key}: labels do not align with the clean split")
        induced = clean["correct"].bool() & (pred != y)
        same_left = (pred // 10 == y // 10) & induced
        same_right = (pred % 10 == y % 10) & induced
        counts = torch.tensor([int(induced.sum()), int(same_left.sum()), int(same_right.sum())])
        total += counts
        out[key.split("/")[1]] = _row(counts)
    return {"severity": severity, "uniform_share": 18 / 99, "pooled": _row(total), "per_corruption": out}


def _row(c: torch.Tensor) -> dict:
    n = int(c[0])
    return {"n_mistakes": n, "share_keeps_a_digit": (int(c[1]) + int(c[2])) / n if n else None,
            "share_keeps_left": int(c[1]) / n if n else None, "share_keeps_right": int(c[2]) / n if n else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--severity", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = digit_share(args.eval_dir, args.severity)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result["pooled"]), f"(uniform: {18 / 99:.3f})")


if __name__ == "__main__":
    main()
