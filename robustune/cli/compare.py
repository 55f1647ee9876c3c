"""``robustune compare``: paired significance of differences between evaluated runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging


@command()
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders (or eval folders); the first is the reference"),
    samples: int = typer.Option(2000, help="bootstrap resamples of the images (mCE, mean corruption accuracy)"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the comparisons as JSON"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Compare RUN_B, RUN_C, ... with RUN_A image by image: exact McNemar per accuracy cell, paired
    bootstrap for mCE / mean corruption accuracy, per-seed differences for seed folders, and the
    training compute of each method (flagged when unequal)."""
    from robustune.report.compare import compare_runs
    from robustune.report.compare_text import comparison_dict, format_comparison
    from robustune.files import write_json

    setup_logging(verbose)
    comparisons = compare_runs(list(runs), samples=samples, seed=seed)
    for cmp in comparisons:
        typer.echo(format_comparison(cmp))
    if json_out:
        write_json(json_out, {"comparisons": [comparison_dict(c) for c in comparisons]})
        typer.echo(f"json: {json_out}")


@command()
def leaderboard(
    runs: list[Path] = typer.Argument(..., help="run folders (or eval folders), one row each"),
    out: Path = typer.Option(Path("leaderboard.html"), "--out", help="the page to write"),
    reference: Optional[Path] = typer.Option(None, help="model the significance markers compare with "
                                             "(default: the first run)"),
    title: str = typer.Option("robustune leaderboard", help="page title"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """One self-contained, sortable, filterable HTML leaderboard with protocols on hover and paired
    significance markers against a reference model."""
    from robustune.report.leaderboard import write_leaderboard

    setup_logging(verbose)
    path = write_leaderboard(list(runs), out, reference=reference, title=title)
    typer.echo(f"leaderboard: {path}")
