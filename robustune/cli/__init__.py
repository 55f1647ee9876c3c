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


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        datefmt="[%X]", handlers=[RichHandler(show_path=False, markup=False)],
                        force=True)


def fail(message: str) -> None:
    """Print a one-line error (no traceback) and exit with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _register_commands() -> None:
    from robustune.cli import core  # noqa: F401  (train, eval, list, demo)
    from robustune.cli import clip  # noqa: F401  (zeroshot)
    from robustune.cli import robustness  # noqa: F401  (corrupt, analyze, report)
    from robustune.cli import fewshot  # noqa: F401  (fewshot)
    from robustune.cli import ablate  # noqa: F401  (ablate)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    if argv is not None:
        sys.argv = ["robustune", *argv]
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    app()
