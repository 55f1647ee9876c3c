"""scripts/severity_table.py: one severity's mCE per row and the per-seed paired differences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustune.corruptions.registry import COMMON_CORRUPTIONS
from robustune.eval.ood_suites import corruption_key

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "severity_table.py"


def _row(method: str, seed: int, error: float) -> dict:
    metrics = {f"{corruption_key(c, 1)} [top1_accuracy]": 1 - error for c in COMMON_CORRUPTIONS}
    metrics["clean [top1_accuracy]"] = 0.9
    return {"values": {"method": method}, "seed": seed, "metrics": metrics}


def test_paired_differences_per_seed_by_hand(tmp_path):
    # reference error 0.5 everywhere: a row with error e has CE = e / 0.5 per corruption, mCE = 200·e
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"rows": [_row("none", 0, 0.5)]}))
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"rows": [_row("a", 0, 0.25), _row("a", 1, 0.25),
                                          _row("b", 0, 0.30), _row("b", 1, 0.35)]}))
    out = tmp_path / "out.json"
    run = subprocess.run([sys.executable, str(SCRIPT), str(ref), str(table), "--severity", "1",
                          "--paired", "method=a", "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    mce = {r["row"]: r["mCE"]["mean"] for r in data["rows"]}
    assert mce == pytest.approx({"method=none": 100.0, "method=a": 50.0, "method=b": 65.0})
    (b_minus_a,) = [d for d in data["paired"] if d["row"] == "method=b"]
    assert b_minus_a["mCE"]["per_seed"] == pytest.approx([10.0, 20.0])
    assert b_minus_a["mCE"]["mean"] == pytest.approx(15.0)
    assert b_minus_a["mCE"]["std"] == pytest.approx(50 ** 0.5)  # sample std of (10, 20)
    assert "+15.0 ± 7.1 (+10.0, +20.0)" in run.stdout
