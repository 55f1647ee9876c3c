"""The ``robustune`` command line: thin typer commands over library calls.

Each command lives in its own module and registers itself on :data:`robustune.cli.app.app`.
"""

from __future__ import annotations

import os
import sys

from robustune.cli.app import app, normalise_resume


def _register_commands() -> None:
    from robustune.cli import core  # noqa: F401  (train, eval, list, demo)
    from robustune.cli import clip  # noqa: F401  (zeroshot)
    from robustune.cli import robustness  # noqa: F401  (corrupt, analyze, report)
    from robustune.cli import fewshot  # noqa: F401  (fewshot)
    from robustune.cli import ablate  # noqa: F401  (ablate)
    from robustune.cli import data  # noqa: F401  (verify)
    from robustune.cli import compare  # noqa: F401  (compare, leaderboard)
    from robustune.cli import export  # noqa: F401  (export)
    from robustune.cli import reproduce  # noqa: F401  (reproduce)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    sys.argv = ["robustune", *normalise_resume(list(sys.argv[1:] if argv is None else argv))]
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    app()
