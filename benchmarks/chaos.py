"""Chaos: real kills at random moments, each job continued until done, every output compared.

Run: ``.venv/bin/python benchmarks/chaos.py --kills 20 [--seed 0] [--quick] [--out DIR]``

Three jobs, each first run once uninterrupted (the reference), then run again while being killed
at random moments — ``kill -9`` and ``SIGTERM`` mixed at random — and continued each time with the
same command, until it finishes:

- ``gfn``: a GFN fine-tune (``robustune train``, small_cnn on digits from an ERM run trained here
  first, step checkpoints every 4 steps); output: the final weights (every tensor) and the
  metrics rows (step, loss);
- ``eval``: ``robustune eval`` of the ERM run with the clean, PGD and corruptions suites;
  output: every results cell (metric, value, n);
- ``corrupt``: ``robustune corrupt digits``; output: every corrupted image file, byte for byte.

The kills are spread over the jobs in turn. Four in five land *in the work*: once the (re)started
process has begun working (train / eval: it holds the folder's lock file; corrupt: it wrote a new
file), after a time drawn uniformly between 0 and the reference run's working time; one in five
lands in the start-up (imports, model building), uniformly over the reference's start-up time. A job that finishes before its share of kills is run again from an empty folder (a new
round). A fault is *survived identical* when its round ended with output identical to the
reference and every restart after it ran without error; otherwise it is *lost* (named). The
kill times and signals come from ``--seed``. Prints one line per fault and the summary
``faults injected / survived identical / lost``, and the temporary files a killed writer left in
the finished outputs (ignored by every reader; counted, not hidden); ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTINUABLE = {0, 75, -signal.SIGTERM, -signal.SIGKILL}  # done, stopped on a signal, killed


@dataclass
class Fault:
    job: str
    round: int
    phase: str  # start-up | work
    after_s: float  # after the process start (start-up) or after it began working (work)
    signal: str
    exit_code: int | None = None
    outcome: str = "pending"  # survived identical | lost: <why>


def robustune(*args: str) -> list[str]:
    return [sys.executable, "-m", "robustune.cli", *args]


def sets(*items: str) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def job_commands(work: Path, quick: bool) -> dict[str, callable]:
    """Each job's command line for an output folder."""
    base = work / "erm_base"
    corrupt_ref = work / "ref" / "corrupt"
    epochs, subset = ("1", "128") if quick else ("2", "192")
    corruptions, severities = ("pixelate", "1,3") if quick else ("gaussian_noise,pixelate,contrast", "1,3")
    return {
        "gfn": lambda out: robustune(
            "train", "configs/gfn_digits.yaml", "--out", str(out), *sets(
                "model.name=small_cnn", f"model.init_from={base}", f"data.train_subset={subset}",
                "data.batch_size=16", f"train.epochs={epochs}", "train.eval_every=0", "train.log_every=1",
                "train.checkpoint_every=4")),
        "eval": lambda out: robustune(
            "eval", str(base), "--out", str(out), "--suite", "clean,pgd,corruptions",
            "--eps", "2/255" if quick else "2/255,4/255", "--steps", "3", "--n-examples", "120",
            "--option", f"corruption_root={corrupt_ref}"),
        "corrupt": lambda out: robustune(
            "corrupt", "digits", "--out", str(out), "--corruptions", corruptions,
            "--severities", severities, "--workers", "1"),
    }


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def n_images(out: Path) -> int:
    return sum(1 for p in out.rglob("*.png")) if out.exists() else 0


def working(job: str, out: Path, pid: int, files_before: int) -> bool:
    """Has process ``pid`` begun its work (past imports and model building)?"""
    if job == "corrupt":
        return n_images(out) > files_before
    try:
        return json.loads((out / ".robustune.lock").read_text()).get("pid") == pid
    except (OSError, ValueError):
        return False


def wait_working(job: str, out: Path, proc: subprocess.Popen, files_before: int) -> float | None:
    """Seconds until ``proc`` works (None: it ended first)."""
    t0 = time.perf_counter()
    while not working(job, out, proc.pid, files_before):
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return time.perf_counter() - t0


def run_reference(job: str, cmd: list[str], out: Path) -> tuple[float, float]:
    """(start-up seconds, working seconds) of an uninterrupted run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    startup = wait_working(job, out, proc, 0) if job else 0.0
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"reference run failed ({' '.join(cmd)}):\n{err[-3000:]}")
    total = time.perf_counter() - t0
    return (startup if startup is not None else total), total - (startup or total)


# ---- outputs and their comparison ---------------------------------------------------------------

def output_of(job: str, out: Path) -> dict:
    if job == "gfn":
        from safetensors.torch import load_file

        weights = load_file(str(out / "model.safetensors"))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {"weights": weights, "rows": [(r["step"], r.get("loss")) for r in rows if "loss" in r]}
    if job == "eval":
        cells = json.loads((out / "results.json").read_text())["cells"]
        return {k: (c["metric"], c["value"], c["n"]) for k, c in cells.items()}
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in (".png", ".jpg", ".JPEG")}


def leftovers(out: Path) -> list[str]:
    """Temporary files or folders a killed writer left in the finished output (readers skip them)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if ".tmp" in p.name or p.name.startswith(".epoch_"))


def differences(job: str, got: dict, ref: dict) -> list[str]:
    if job == "gfn":
        import torch

        w, r = got["weights"], ref["weights"]
        diff = [k for k in r if k not in w or not torch.equal(w[k], r[k])] + [k for k in w if k not in r]
        return [f"weights differ: {diff[:3]}"] * bool(diff) + ["metrics rows differ"] * (got["rows"] != ref["rows"])
    diff = sorted(k for k in set(got) | set(ref) if got.get(k) != ref.get(k))
    return [f"{len(diff)} {'cell' if job == 'eval' else 'file'}(s) differ or missing, e.g. {diff[:2]}"] * bool(diff)


# ---- the chaos ----------------------------------------------------------------------------------

def chaos_round(job: str, cmd, out: Path, budget: int, timing: tuple[float, float], rnd: random.Random,
                round_no: int) -> tuple[list[Fault], list[str]]:
    """Run ``cmd`` into a fresh ``out`` with up to ``budget`` kills until it finishes."""
    shutil.rmtree(out, ignore_errors=True)
    faults: list[Fault] = []
    problems: list[str] = []
    startup, work = timing
    for _ in range(budget + 20):
        before = n_images(out)
        proc = subprocess.Popen(cmd(out), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        if len(faults) < budget:
            phase = "start-up" if rnd.random() < 0.2 else "work"
            after = rnd.uniform(0.0, startup if phase == "start-up" else work)
            sig = rnd.choice([signal.SIGKILL, signal.SIGTERM])
            if phase == "work" and wait_working(job, out, proc, before) is None:
                after = -1.0  # it ended before it began working: nothing to kill
            try:
                proc.wait(timeout=after if after >= 0 else 0)
            except subprocess.TimeoutExpired:
                proc.send_signal(sig)
                _, err = proc.communicate()
                faults.append(Fault(job, round_no, phase, round(after, 2), sig.name, proc.returncode))
                if proc.returncode not in CONTINUABLE:
                    problems.append(f"after {sig.name}: exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
                continue
        _, err = proc.communicate()
        if proc.returncode != 0:
            problems.append(f"continuation exit {proc.returncode}: {err.strip().splitlines()[-1:]}")
            if proc.returncode not in CONTINUABLE:
                break
            continue
        return faults, problems
    return faults, problems + ["did not finish"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smaller jobs (the test suite's version)")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="write the faults and the summary here")
    args = ap.parse_args()
    work = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / f"robustune-chaos-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rnd = random.Random(args.seed)
    cmds = job_commands(work, args.quick)
    t0 = time.perf_counter()
    run_reference("", robustune("train", "configs/erm_digits.yaml", "--out", str(work / "erm_base"), *sets(
        "model.name=small_cnn", "data.train_subset=256", "train.epochs=2", "train.eval_every=0")), work / "erm_base")
    timings, refs = {}, {}
    for job in ("corrupt", "gfn", "eval"):  # corrupt first: its output is the eval's corruption_root
        timings[job] = run_reference(job, cmds[job](work / "ref" / job), work / "ref" / job)
        refs[job] = output_of(job, work / "ref" / job)
        print(f"reference {job}: start-up {timings[job][0]:.1f} s, work {timings[job][1]:.1f} s", flush=True)
    share = {job: args.kills // 3 + (i < args.kills % 3) for i, job in enumerate(("gfn", "eval", "corrupt"))}
    faults: list[Fault] = []
    stray = 0
    for job, budget in share.items():
        round_no = 0
        while budget > 0:
            out = work / "chaos" / f"{job}-{round_no}"
            got, problems = chaos_round(job, cmds[job], out, budget, timings[job], rnd, round_no)
            diff = [] if problems and problems[-1] == "did not finish" else differences(job, output_of(job, out), refs[job])
            left = leftovers(out)
            stray += len(left)
            if left:
                print(f"{job:8s} round {round_no}  {len(left)} temporary file(s) left, e.g. {left[0]}", flush=True)
            for f in got:
                f.outcome = "survived identical" if not problems and not diff else "lost: " + "; ".join(problems + diff)
                print(f"{f.job:8s} round {f.round}  {f.signal:8s} {f.phase:8s} +{f.after_s:6.2f} s  exit {f.exit_code!s:5s} "
                      f"→ {f.outcome}", flush=True)
            faults += got
            budget -= len(got)
            round_no += 1
    survived = sum(f.outcome == "survived identical" for f in faults)
    summary = {"faults_injected": len(faults), "kill_9": sum(f.signal == "SIGKILL" for f in faults),
               "sigterm": sum(f.signal == "SIGTERM" for f in faults), "in_work": sum(f.phase == "work" for f in faults),
               "survived_identical": survived,
               "lost": len(faults) - survived, "temporary_files_left": stray, "seed": args.seed, "quick": args.quick,
               "wall_s": round(time.perf_counter() - t0, 1), "reference_s": {k: [round(x, 1) for x in v] for k, v in timings.items()}}
    print(f"faults injected: {summary['faults_injected']} (kill -9: {summary['kill_9']}, SIGTERM: "
          f"{summary['sigterm']}; {summary['in_work']} in the work, the rest in start-up) | survived with identical "
          f"output: {survived} | lost: {summary['lost']} | temporary files left behind: {stray}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "faults": [asdict(f) for f in faults]}, indent=2))
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    raise SystemExit(0 if summary["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
