"""``robustune train --nproc N``: a thin wrapper that re-runs the command under torchrun."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def torchrun_command(nproc: int, config: Path, overrides: list[str], run_dir: Path,
                     resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "robustune.cli", "train", str(config), "--out", str(run_dir)]
    for item in overrides:
        cmd += ["--set", item]
    if resume:
        cmd.append("--resume")
    return cmd


def launch_torchrun(nproc: int, config: Path, overrides: list[str], run_dir: Path, resume: bool) -> int:
    """Run ``nproc`` processes on this node; returns torchrun's exit code."""
    cmd = torchrun_command(nproc, config, overrides, run_dir, resume)
    log.info("launching: %s", " ".join(cmd))
    return subprocess.call(cmd)
