"""The short chaos run: a GFN fine-tune, an evaluation (clean, PGD, corruptions) and `robustune
corrupt`, each killed once at a random moment (kill -9 or SIGTERM) and continued; every output must
equal the uninterrupted run's (benchmarks/chaos.py; the long run is `--kills 20`, docs/scale-out.md)."""

import json
import subprocess
import sys
from pathlib import Path


def test_short_chaos_run_survives_every_fault(tmp_path):
    report = tmp_path / "chaos.json"
    out = subprocess.run([sys.executable, "benchmarks/chaos.py", "--kills", "3", "--quick", "--seed", "1",
                          "--out", str(tmp_path / "work"), "--json", str(report)],
                         capture_output=True, text=True, timeout=1200, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    data = json.loads(report.read_text())
    summary = data["summary"]
    assert summary["faults_injected"] == 3 and summary["survived_identical"] == 3 and summary["lost"] == 0
    assert {f["job"] for f in data["faults"]} == {"gfn", "eval", "corrupt"}
    assert "faults injected: 3" in out.stdout
