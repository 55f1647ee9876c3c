"""Time ``robustune demo`` from an empty cache, stage by stage (the issue's target: ≤ 5 min on 2 cores).

Runs the real command in a subprocess with a fresh ``ROBUSTUNE_CACHE`` and output folder (nothing
reused: the ERM pre-training, digits-C and the tiny CLIP are all made again), then prints the
per-stage wall and CPU seconds from the demo's ``timings.json``, the total wall time of the
command (imports included), and the machine's load average sampled during the run — a time
measured while other work runs is inflated, so it is printed with that load.

    .venv/bin/python benchmarks/demo_time.py                 # the full demo
    .venv/bin/python benchmarks/demo_time.py --quick         # the smoke-test demo
    .venv/bin/python benchmarks/demo_time.py --json runs/bench/demo_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_SECONDS = 300


def sample_load(stop: threading.Event, samples: list[float], every: float = 5.0) -> None:
    while not stop.wait(every):
        samples.append(os.getloadavg()[0])


def time_demo(quick: bool, workdir: Path, threads: int | None = None) -> dict:
    env = {**os.environ, "ROBUSTUNE_CACHE": str(workdir / "cache"), "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = f"{root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, "-m", "robustune.cli", "demo", "--out", str(workdir / "demo")]
    cmd += ["--quick"] if quick else []
    samples: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(stop, samples), daemon=True)
    sampler.start()
    t0, launched = time.perf_counter(), time.time()
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True)
    total, exited = time.perf_counter() - t0, time.time()
    stop.set()
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"the demo failed (exit {proc.returncode})")
    timings = json.loads((workdir / "demo" / "timings.json").read_text())
    html = workdir / "demo" / "report.html"
    (workdir / "demo_stdout.txt").write_text(proc.stdout)
    overhead = {"startup_seconds": round(timings["started_at"] - launched, 1),  # interpreter, imports, set-up
                "shutdown_seconds": round(exited - timings["finished_at"], 1)}  # summary, report.json, exit
    return {"quick": quick, "command_seconds": round(total, 1), "stages": timings["stages"], **overhead,
            "cores": os.cpu_count(), "load_avg_mean": round(sum(samples) / len(samples), 2),
            "load_avg_max": round(max(samples), 2), "report_html_bytes": html.stat().st_size,
            "threads": threads or "default", "last_lines": proc.stdout.strip().splitlines()[-4:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="time `robustune demo --quick`")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the demo (default: torch's); on a "
                        "shared machine 1 thread keeps the CPU seconds free of spin-waiting")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        res = time_demo(args.quick, args.keep, args.threads)
    else:
        with tempfile.TemporaryDirectory(prefix="robustune-demo-time-") as tmp:
            res = time_demo(args.quick, Path(tmp), args.threads)
    print(f"robustune demo{' --quick' if args.quick else ''}, empty cache, {res['cores']} cores, "
          f"threads {res['threads']}, "
          f"load average during the run: mean {res['load_avg_mean']}, max {res['load_avg_max']}")
    print(f"{'stage':28s} {'wall s':>8s} {'cpu s':>8s}")
    for s in res["stages"]:
        print(f"{s['stage']:28s} {s['seconds']:8.1f} {s['cpu_seconds']:8.1f}{'  (cached)' if s['cached'] else ''}")
    stage_sum = sum(s["seconds"] for s in res["stages"])
    print(f"{'sum of stages':28s} {stage_sum:8.1f}")
    print(f"{'before the first stage':28s} {res['startup_seconds']:8.1f}   (interpreter, imports, set-up)")
    print(f"{'after the last stage':28s} {res['shutdown_seconds']:8.1f}   (summary, report.json, exit)")
    print(f"{'whole command (imports too)':28s} {res['command_seconds']:8.1f}   "
          f"target ≤ {TARGET_SECONDS} s: {'met' if res['command_seconds'] <= TARGET_SECONDS else 'NOT met'}"
          + ("" if res["load_avg_mean"] < 1.5 * (res["cores"] or 1) else "  (machine loaded: time inflated)"))
    print(f"report.html: {res['report_html_bytes'] / 1000:.0f} kB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
