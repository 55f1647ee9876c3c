"""The typer :data:`app`, logging, and the one decorator every command is declared with:
:func:`command` registers it on :data:`app` and wraps it in :func:`reports_user_errors`, so a
fault the user can fix is one line, never a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable

import typer

from robustune.config import ConfigError
from robustune.errors import (
    CorruptFileError,
    DiskFullError,
    FolderLockedError,
    ProtocolError,
    TrainingDivergedError,
    WeightsUnavailableError,
)
from robustune.registry import UnknownNameError

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


# Faults a user can fix: each is reported as one line (fail), never as a traceback.
USER_ERRORS = (ConfigError, UnknownNameError, FileNotFoundError, FileExistsError, ValueError,
               DiskFullError, FolderLockedError, CorruptFileError, WeightsUnavailableError,
               TrainingDivergedError, ProtocolError)


def reports_user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command: a :data:`USER_ERRORS` fault becomes one ``error:`` line and status 2."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as exc:
            fail(str(exc))

    return run


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a command: registered on :data:`app` (as ``name``, default the function's name), its
    user errors reported as one line by :func:`reports_user_errors`."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name)(reports_user_errors(fn))

    return register
