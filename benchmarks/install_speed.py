"""Cold install of requirements.lock with pip and with uv, side by side, from a fresh clone.

    python benchmarks/install_speed.py --work /tmp/install-bench [--quick]

Clones this repository (``git clone --depth 1`` of the checkout's HEAD) into WORK, then in two
fresh venvs with no package cache (``--no-cache-dir`` / ``--no-cache``) installs the lock: (a) with
pip, as the Makefile does; (b) with uv (installed into its venv by pip first, that step timed
apart), using the same package sources pip is configured with (find-links, extra indexes;
``--index-strategy unsafe-best-match`` so uv, like pip, takes the pinned version from whichever
source has it). Prints wall and CPU seconds of each and their ratio, with the machine's load
average before and after: on a shared machine the ratio, not the seconds, is the result.
``--quick`` installs only the lock's lines that are not torch / CUDA, each without its
dependencies (a smoke test of the script).
"""

from __future__ import annotations

import argparse
import configparser
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UV_VERSION = "0.13.8"
HEAVY = ("torch", "torchvision", "triton", "nvidia-", "cuda-")


def pip_sources() -> dict[str, str]:
    """uv environment variables for the find-links / extra indexes pip is configured with."""
    cfg = configparser.ConfigParser()
    cfg.read([p for p in ("/etc/pip.conf", Path.home() / ".config/pip/pip.conf", Path.home() / ".pip/pip.conf")])
    find_links = os.environ.get("PIP_FIND_LINKS") or cfg.get("global", "find-links", fallback="")
    extra = os.environ.get("PIP_EXTRA_INDEX_URL") or cfg.get("global", "extra-index-url", fallback="")
    env = {}
    if find_links.strip():
        env["UV_FIND_LINKS"] = ",".join(find_links.split())
    if extra.strip():
        env["UV_EXTRA_INDEX_URL"] = " ".join(extra.split())
    return env


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children) of ``cmd``; its output goes to stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr, env={**os.environ, **(env or {})})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - t0, cpu


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, help="a scratch folder (deleted and recreated); without it the "
                    "benchmark is skipped (it downloads the lock twice: run it on purpose)")
    ap.add_argument("--quick", action="store_true", help="skip torch / CUDA lines (smoke test)")
    args = ap.parse_args()
    if args.work is None:
        print("install_speed: skipped (pass --work DIR to download and install the lock twice)")
        return
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    clone = args.work / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)], check=True)
    lock = clone / "requirements.lock"
    if args.quick:
        lines = [ln for ln in lock.read_text().splitlines() if not ln.startswith(HEAVY)]
        lock = args.work / "requirements-quick.txt"
        lock.write_text("\n".join(lines) + "\n")
    print(f"load average before: {load()}")
    rows = {}
    no_deps = ["--no-deps"] if args.quick else []
    venv = args.work / "pip-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    rows["pip"] = timed([str(venv / "bin/python"), "-m", "pip", "install", "--no-cache-dir", "-q", *no_deps,
                         "-r", str(lock)])
    venv = args.work / "uv-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    rows["uv itself (pip install uv)"] = timed([str(venv / "bin/python"), "-m", "pip", "install", "--no-cache-dir",
                                              "-q", f"uv=={UV_VERSION}"])
    rows["uv"] = timed([str(venv / "bin/uv"), "pip", "install", "--no-cache", "--python", str(venv / "bin/python"),
                        "--index-strategy", "unsafe-best-match", *no_deps, "-r", str(lock)], env=pip_sources())
    print(f"load average after: {load()}  ({os.cpu_count()} cores)")
    print(f"{'installer':<28} {'wall s':>8} {'CPU s':>8}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:<28} {wall:8.1f} {cpu:8.1f}")
    uv_total = rows["uv"][0] + rows["uv itself (pip install uv)"][0]
    print(f"pip / uv wall ratio: {rows['pip'][0] / rows['uv'][0]:.2f}× (with uv's own install: "
          f"{rows['pip'][0] / uv_total:.2f}×)")


if __name__ == "__main__":
    main()
