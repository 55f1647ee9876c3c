"""``robustune ablate``: a grid of runs with one table."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging


@command()
def ablate(
    config: Path = typer.Argument(..., help="base preset, e.g. configs/gfn_digits.yaml"),
    grid: list[str] = typer.Option(..., "--grid", help="axis key=v1,v2 (repeat); e.g. --grid k=1,3,9"),
    seeds: str = typer.Option("0", help="comma-separated seeds"),
    suite: str = typer.Option("clean,pgd", help="evaluation suites per cell"),
    eps: str = typer.Option("8/255", help="PGD radii"),
    steps: int = typer.Option(10, help="PGD steps"),
    set_: list[str] = typer.Option([], "--set", help="override of the base config"),
    option: list[str] = typer.Option([], "--option", help="suite option key=value"),
    out: Optional[Path] = typer.Option(None, help="folder (default runs/ablate_<name>)"),
    columns: str = typer.Option("", help="table columns as wildcards on cell keys, e.g. "
                                "'clean,corruptions/motion_blur/5' (default: headline metrics)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run a grid (sequential, resumable, finished cells skipped) and write ablation.md/.json."""
    from robustune.ablation import parse_grid, run_ablation
    from robustune.cli.evaluation import parse_eps_list, parse_list, parse_options
    from robustune.config import EvalConfig, load_config

    setup_logging(verbose)
    base = load_config(config, set_)
    ecfg = EvalConfig(suites=parse_list(suite), eps=parse_eps_list(eps), pgd_steps=steps)
    folder = out or Path("runs") / f"ablate_{base.name}"
    res = run_ablation(base, parse_grid(grid), folder, [int(s) for s in parse_list(seeds)], ecfg,
                       parse_options(option), parse_list(columns) or None)
    typer.echo(res.table_md)
    typer.echo(f"table: {folder / 'ablation.md'}")
