"""``robustune train --nproc N``: a thin wrapper that re-runs the command under torchrun."""

from __future__ import annotations

import logging
import re
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


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE`` (e.g. ``--nproc``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def relaunch_torchrun(nproc: int, argv: list[str]) -> int:
    """Run ``robustune ARGV`` (``--nproc`` removed) as ``nproc`` processes on this node under torchrun.

    The ranks' stderr is passed through :func:`filter_torchrun_stderr`: a user error that every
    rank reports stays one line, without torchrun's own failure report.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "robustune.cli", *without_option(argv, "--nproc")]
    log.debug("launching: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, bufsize=1)
    for line in filter_torchrun_stderr(proc.stderr):
        sys.stderr.write(line)
        sys.stderr.flush()
    code = proc.wait()
    return 2 if code and ERRORS_SEEN[0] else code


ERRORS_SEEN = [False]
_AGENT = ("torch/distributed/run.py", "ChildFailedError")


def filter_torchrun_stderr(lines):
    """The ranks' stderr lines minus torchrun's failure report and repeated ``error:`` lines.

    A traceback is held until its last line: torchrun's own (it names ``torch.distributed``'s
    launcher) is dropped with the failure summary that follows it, to the end; a rank's real crash
    stays visible.
    """
    errors, block, report = set(), [], False
    ERRORS_SEEN[0] = False
    for line in lines:
        if report:
            continue
        if block:
            block.append(line)
            if line[:1] not in (" ", "\t") and not line.startswith("Traceback"):
                if any(a in "".join(block) for a in _AGENT):
                    report = True  # torchrun's summary of the failed ranks follows: not for the user
                else:
                    yield from block
                block = []
            continue
        if line.startswith("Traceback"):
            block = [line]
        elif line.startswith("error:"):
            ERRORS_SEEN[0] = True
            if line not in errors:
                errors.add(line)
                yield line
        elif not (re.match(r"^[EWI]\d{4} ", line) and "torch" in line):
            yield line
    yield from block
