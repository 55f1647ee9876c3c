"""``robustune train --nproc N``: a thin wrapper that re-runs the command under torchrun."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def torchrun_command(nproc: int, config: Path, overrides: list[str], run_dir: Path,
                     resume: bool | str = "auto", max_restarts: int = 0) -> list[str]:
    """The torchrun line. ``resume``: auto | yes | no (or True / False). A restarted worker
    (``--max-restarts``) continues from the last checkpoint because ``--resume auto`` finds the run
    the first try started; with restarts, ``no`` becomes ``auto`` (a restart must continue)."""
    mode = ("yes" if resume else "no") if isinstance(resume, bool) else resume
    if max_restarts and mode == "no":
        mode = "auto"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           f"--max-restarts={max_restarts}", "-m", "robustune.cli", "train", str(config), "--out", str(run_dir),
           "--resume", mode]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def launch_torchrun(nproc: int, config: Path, overrides: list[str], run_dir: Path, resume: bool | str = "auto",
                    max_restarts: int = 0) -> int:
    """Run ``nproc`` processes on this node; returns torchrun's exit code."""
    cmd = torchrun_command(nproc, config, overrides, run_dir, resume, max_restarts)
    log.info("launching: %s", " ".join(cmd))
    return subprocess.call(cmd)
