"""What ``robustune demo`` shows: a rich stage counter with elapsed time and ETA, one line per
evaluated model, and at the end what was made, what to open, the headline numbers and stage times.

Everything else (robustune's and open_clip's log records, Python warnings, tqdm bars) goes to
``<out>/demo.log``, not to the console.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _TimeColumn(ProgressColumn):
    """``0:42 / ~1:10`` while running (elapsed / expected stage time), ``0:38`` when done."""

    def render(self, task) -> Text:
        elapsed = task.finished_time if task.finished else (task.elapsed or 0.0)
        if task.finished:
            return Text(f"{clock(elapsed)}" + (" (cached)" if task.fields.get("cached") else ""), style="green")
        return Text(f"{clock(elapsed)} / ~{clock(task.fields['expected'](elapsed, task.completed / 100))}")


class RichProgress:
    """:class:`robustune.demo.DemoProgress` drawn with rich; the ETA scales our per-stage estimates by
    how fast the finished stages went on this machine, and by the running stage's own progress."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), _TimeColumn(),
                                 console=console, transient=False)
        self.task = None
        self.estimate = 1.0
        self.spent = 0.0  # seconds of finished, non-cached stages
        self.expected = 0.0  # their estimates

    def _speed(self) -> float:
        return min(20.0, max(0.3, self.spent / self.expected)) if self.expected > 0 else 1.0

    def _expected(self, elapsed: float, fraction: float) -> float:
        guess = self.estimate * self._speed()
        if fraction >= 0.05 and elapsed > 2:  # the stage's own pace, once it has some
            guess = elapsed / fraction
        return max(guess, elapsed)

    def start(self, index: int, total: int, label: str, estimate: float) -> None:
        self.estimate = estimate
        self.task = self.progress.add_task(f"[{index}/{total}] {label}", total=100, expected=self._expected,
                                           cached=False)

    def advance(self, fraction: float) -> None:
        self.progress.update(self.task, completed=100 * fraction)

    def finish(self, seconds: float, skipped: bool) -> None:
        if not skipped:
            self.spent += seconds
            self.expected += self.estimate
        self.progress.update(self.task, completed=100, cached=skipped)
        self.progress.stop_task(self.task)

    def line(self, text: str) -> None:
        self.progress.console.print(f"    {text}", highlight=False, soft_wrap=True, markup=False)


class _LogStream(io.TextIOBase):
    """stderr stand-in while the demo runs: complete lines go to the log, tqdm's redraws are dropped."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.buf = logger, ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            line = line.rsplit("\r", 1)[-1].strip()
            if line:
                self.logger.info("%s", line)
        if "\r" in self.buf:
            self.buf = self.buf.rsplit("\r", 1)[-1]
        return len(text)


@contextlib.contextmanager
def demo_logging(log_file: Path, verbose: bool = False) -> Iterator[None]:
    """Every log record (and warnings, and stderr) into ``log_file``; only errors on the console."""
    from rich.logging import RichHandler

    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console_handler = RichHandler(show_path=False, markup=False, console=Console(file=sys.stderr))  # the real one
    console_handler.setLevel(logging.DEBUG if verbose else logging.ERROR)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [file_handler, console_handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    stderr = sys.stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            if not verbose:
                sys.stderr = _LogStream(logging.getLogger("stderr"))
            yield
    finally:
        sys.stderr = stderr
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved
        file_handler.close()


def final_lines(result, started: float) -> list[str]:
    """What was made, what to open, the headline numbers and the per-stage times."""
    from robustune.demo import clip_display_name, eval_line

    out = result.out
    lines = ["", f"made in {clock(time.perf_counter() - started)}:",
             f"  {result.report_html}   the report (self-contained; open it in a browser)",
             f"  {result.report_md}     the same as Markdown (+ {result.report_md.stem}_files/ PNGs)",
             f"  {out / 'report.json'}, {out / 'eval'}/<model>/results.json   every number, with n and 95 % CI",
             f"  {out}/<method>/   fine-tuned models; the pre-trained ERM model: {result.runs.get('erm')}",
             f"  {out / 'demo.log'}   everything the stages logged",
             "headline numbers (digits test split; 95 % Wilson interval in brackets):"]
    lines += [f"  {eval_line(name, res)}" for name, res in result.results.items()]
    for row in result.clip_rows:
        hm = row["metrics"].get("hm", {})
        shown = " · ".join(f"HM {m.replace('pgd ', 'PGD ε=')} {s['hm_of_means']:.1f} %" for m, s in hm.items())
        lines.append(f"  CLIP {clip_display_name(row['method'])}: {shown}")
    times = " · ".join(f"{t['stage']} {clock(t['seconds'])}{' (cached)' if t['cached'] else ''}"
                       for t in result.timings)
    lines += [f"stage times: {times}", f"open {result.report_html}"]
    return lines
