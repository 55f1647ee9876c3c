"""Share of corruption-induced mistakes on digits_pairs that keep one of the two digits.

A check of GFN Sec. 3.1 / Fig. 2 that needs no class-similarity model (ours). A mistake is
corruption-induced when the clean image is classified right and its corrupted copy wrong. Class
"ab" shares a digit with the 18 classes "aX" and "Xb": if mistakes fell on the 99 wrong classes
uniformly, 18/99 = 18.2 % of them would keep a digit. Reads an evaluation folder with the ``clean``
and ``corruptions`` suites (its ``per_sample/`` files hold predictions and labels).
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustune.eval.results import EvalResults, load_per_sample


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
