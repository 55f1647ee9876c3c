"""Stop requests from a scheduler: finish the unit of work, save, exit resumably.

SLURM, Kubernetes and spot instances send SIGTERM (or a chosen signal, e.g. ``sbatch
--signal=B:USR1@120``) some seconds before SIGKILL. :class:`StopSignals` turns the first such
signal into a flag that the training loop reads after each step (and the evaluation after each
cell): the work so far is saved and :class:`Preempted` is raised; the CLI prints one line saying
how to continue and exits with :data:`EXIT_PREEMPTED`. A second signal exits at once
(``128 + signal number``, the shell's convention) without saving anything more.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 75  # EX_TEMPFAIL of sysexits.h: "temporary failure, try again" — a requeue continues
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


class Preempted(Exception):
    """The process stopped on a signal after saving its work; ``how`` says how to continue."""

    def __init__(self, message: str, how: str = "") -> None:
        super().__init__(message)
        self.how = how


def parse_signals(names: list[str] | tuple[str, ...]) -> list[signal.Signals]:
    """``["SIGTERM", "USR1"]`` → signal numbers; an unknown name is a ValueError naming the valid ones."""
    out = []
    for name in names:
        key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
        if key not in signal.Signals.__members__ or key in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"train.stop_signals: unknown or uncatchable signal {name!r}; use e.g. "
                             "SIGTERM, SIGUSR1, SIGUSR2, SIGINT")
        out.append(signal.Signals[key])
    return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|min)?\s*$")


def parse_duration(text: str) -> float:
    """``"15m"`` → 900.0 seconds (units s, m / min, h; a bare number is seconds)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"train.checkpoint_every: {text!r} is neither a step count (e.g. 500) nor a "
                         "duration (e.g. 90s, 15m, 2h)")
    scale = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


class StopSignals:
    """``with StopSignals(["SIGTERM", "SIGUSR1"]) as stop: ... if stop.requested: save; raise``.

    Installs the handlers only in the main thread (elsewhere the block runs without them) and
    restores the previous handlers on exit.
    """

    def __init__(self, names: list[str] | tuple[str, ...] = DEFAULT_SIGNALS) -> None:
        self.signals = parse_signals(list(names))
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return self.received.name if self.received is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            os.write(2, f"\nsecond {signal.Signals(signum).name}: exiting at once, nothing more saved\n".encode())
            os._exit(128 + signum)
        self.received = signal.Signals(signum)
        log.warning("received %s: finishing the current step, then saving and exiting (send it again to "
                    "exit at once)", self.received.name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
