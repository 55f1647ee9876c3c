"""The ``robustune`` command line: thin typer commands over library calls.

Each command lives in its own module and registers itself on :data:`app`.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make vision models and CLIP robust (GFN, ER-APT) and measure how robust they are.")


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to the current ``sys.stderr`` (looked up per record, as rich does,
    so a handler left from an earlier command never writes to a closed, replaced stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    """Rich log lines on a terminal; plain, never-wrapped lines on stderr otherwise (a pipe or a
    log file: rich would wrap at 80 columns, in the middle of a path)."""
    level = logging.DEBUG if verbose else logging.INFO
    folder = sys.modules.get("robustune.data.folder")
    if folder is not None:  # each command warns once per folder of unreadable images
        folder.WARNED.clear()
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]",
                            handlers=[RichHandler(show_path=False, markup=False)], force=True)
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-7s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def fail(message: str) -> None:
    """Print a one-line error (no traceback) and exit with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


REPORT_TO_HELP = "trackers: tensorboard, wandb (comma-separated; open_clip's --report-to)"


def report_to_overrides(report_to: str) -> list[str]:
    """``--report-to tensorboard,wandb`` as the config override ``train.report_to=[...]`` (none if empty)."""
    from robustune.tracking import check_report_to

    names = check_report_to(report_to.split(","))
    return [f"train.report_to=[{','.join(names)}]"] if names else []


def _register_commands() -> None:
    from robustune.cli import core  # noqa: F401  (train, eval, list, demo)
    from robustune.cli import clip  # noqa: F401  (zeroshot)
    from robustune.cli import robustness  # noqa: F401  (corrupt, analyze, report)
    from robustune.cli import fewshot  # noqa: F401  (fewshot)
    from robustune.cli import ablate  # noqa: F401  (ablate)
    from robustune.cli import compare  # noqa: F401  (compare, leaderboard)
    from robustune.cli import export  # noqa: F401  (export)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    if argv is not None:
        sys.argv = ["robustune", *argv]
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    app()
