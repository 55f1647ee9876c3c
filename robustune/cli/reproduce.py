"""``robustune reproduce``: a paper's table as one command (robustune.reproduce)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging
from robustune.config import ConfigError


def _list() -> str:
    from robustune.reproduce import TABLES, make_plan

    lines = [f"{'table':22s} {'scale':12s} {'cells':>6s} {'1 device':>10s} {'8 devices':>10s}  title"]
    for name, table in TABLES.items():
        for scale in table.scales:
            plan = make_plan(name, scale, Path("runs/reproduce") / name / scale)
            lines.append(f"{name:22s} {scale:12s} {len(plan.cells):6d} {plan.hours(1):9.2f}h {plan.hours(8):9.2f}h"
                         f"  {table.title}")
    lines.append("Estimates from the cost model of docs/reproducing.md: forward+backward passes (ratios "
                 "measured in docs/benchmarks.md) over a device throughput — paper: one A100-class GPU "
                 "(assumed); digits, digits_pairs: this 2-core machine (measured); preparation not counted.")
    return "\n".join(lines)


@command()
def reproduce(
    table: Optional[str] = typer.Argument(None, help="e.g. gfn-table3 (see --list)"),
    list_: bool = typer.Option(False, "--list", help="the tables, their cells and estimated cost"),
    scale: str = typer.Option("digits", help="paper (the paper's data and backbone), or built-in data: digits, digits_pairs, digits-erm (--list)"),
    out: Optional[Path] = typer.Option(None, help="folder (default runs/reproduce/TABLE/SCALE)"),
    data_root: str = typer.Option("data", help="paper scale: folder holding imagenet/, imagenet-c/, coco/, ..."),
    prep_root: Path = typer.Option(Path("runs/reproduce/prep"),
                                   help="where the starting models and corrupted sets are made, shared by tables (a subfolder per scale family)"),
    set_: list[str] = typer.Option([], "--set", help="override of every cell's config, e.g. train.epochs=1"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan (cells, suites, cost), run nothing"),
    launcher: str = typer.Option("local", help="local (this machine) or slurm (submitit job array)"),
    jobs: int = typer.Option(1, help="local: cells at once (one GPU each, or a share of the CPU threads)"),
    partition: Optional[str] = typer.Option(None, help="slurm partition"),
    account: Optional[str] = typer.Option(None, help="slurm account"),
    hours: Optional[float] = typer.Option(None, help="slurm time limit per cell (default: the table's)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run (or resume) a table of the GFN or ER-APT paper and write OUT/reproduce.md beside its data."""
    from robustune.reproduce import describe, make_plan
    from robustune.reproduce.launch import SlurmOptions, run_local, run_slurm, sbatch_text
    from robustune.reproduce.report import write_report

    if list_:
        typer.echo(_list())
        return
    if not table:
        raise ConfigError("name a table (e.g. `robustune reproduce gfn-table3`) or use --list")
    if launcher not in ("local", "slurm"):
        raise ConfigError(f"--launcher must be local or slurm, got {launcher!r}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    setup_logging(verbose)
    from robustune.reproduce.tables import get_table, prep_family, scale_name

    scale = scale_name(get_table(table), scale)
    plan = make_plan(table, scale, out or Path("runs/reproduce") / table / scale, data_root, list(set_),
                     prep_root / prep_family(scale))
    slurm = SlurmOptions(partition=partition, account=account, hours=hours)
    if dry_run:
        typer.echo(describe(plan))
        if launcher == "slurm":
            typer.echo("sbatch script of each cell (submitit):\n" + sbatch_text(plan, slurm))
        return
    records = run_slurm(plan, slurm) if launcher == "slurm" else run_local(plan, jobs)
    text = write_report(plan, records, "robustune " + shlex.join(sys.argv[1:]))
    typer.echo(text)
    typer.echo(f"report: {plan.out / 'reproduce.md'}")
