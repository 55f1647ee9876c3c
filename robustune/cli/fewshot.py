"""``robustune fewshot``: a whole few-shot protocol (datasets × settings × shots × methods × seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging
from robustune.cli.evaluation import parse_eps_list, parse_list, parse_options
from robustune.config import ConfigError, parse_number


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in parse_list(text)]
    except ValueError:
        raise ConfigError(f"--{what} must be comma-separated integers, got {text!r}") from None


@command()
def fewshot(
    config: Path = typer.Argument(..., help="method preset, e.g. configs/fewshot_digits_erm.yaml"),
    datasets: str = typer.Option("", help="comma-separated datasets (default: the config's)"),
    seeds: str = typer.Option("1,2,3", help="comma-separated seeds, used as given (0 is valid)"),
    settings: str = typer.Option("base2new", help="comma-separated: fewshot, base2new, cross"),
    shots: str = typer.Option("16", help="comma-separated K (images per class)"),
    methods: str = typer.Option("", help="comma-separated method names or YAML presets "
                                "(default: the config's)"),
    cross_source: Optional[str] = typer.Option(None, help="cross: train here (default: first dataset)"),
    eps: str = typer.Option("1/255", help="comma-separated L∞ radii of the PGD evaluation"),
    pgd_steps: int = typer.Option(100, help="PGD steps of the evaluation"),
    pgd_alpha: str = typer.Option("1/255", help="PGD step size"),
    n_eval: Optional[int] = typer.Option(None, help="fixed seeded subset of each test split"),
    extra_suites: str = typer.Option("", help="more evaluation suites after clean and pgd "
                                     "(their robust accuracies join the table)"),
    option: list[str] = typer.Option([], "--option", help="suite option key=value"),
    out: Path = typer.Option(Path("runs/fewshot"), help="protocol folder (one run folder per cell)"),
    set_: list[str] = typer.Option([], "--set", help="config override, e.g. --set train.epochs=5"),
    keep_going: bool = typer.Option(False, "--keep-going", help="run the other cells when one fails"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the cells and their status, run nothing"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Run (or resume) a few-shot protocol and write OUT/table.md and OUT/table.json."""
    from robustune.config import load_config
    from robustune.fewshot import ProtocolConfig, run_protocol
    from robustune.fewshot.protocol import cell_status, plan_cells, source_of

    setup_logging(verbose)
    cfg = load_config(config, set_)
    alpha = parse_number(pgd_alpha)
    if not isinstance(alpha, float):
        raise ConfigError(f"--pgd-alpha must be a number like 1/255, got {pgd_alpha!r}")
    protocol = ProtocolConfig(
        datasets=parse_list(datasets) or [source_of(cfg)], seeds=_ints(seeds, "seeds"),
        settings=parse_list(settings), shots=_ints(shots, "shots"), methods=parse_list(methods),
        cross_source=cross_source, eps=parse_eps_list(eps), pgd_steps=pgd_steps,
        pgd_alpha=alpha, n_eval=n_eval, extra_suites=parse_list(extra_suites),
        suite_options=parse_options(option), overrides=list(set_))
    if dry_run:
        for cell in plan_cells(cfg, protocol, out):
            typer.echo(f"{cell_status(cell):9s} {cell.run_dir}  evaluations: {', '.join(cell.evals)}")
        return
    run_protocol(cfg, protocol, out, keep_going=keep_going)
    typer.echo((out / "table.md").read_text())
    typer.echo(f"tables: {out / 'table.md'} and {out / 'table.json'}")
