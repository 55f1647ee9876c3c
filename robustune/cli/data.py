"""``robustune verify``: decode every image file of a config's splits once and list the unreadable ones."""

from __future__ import annotations

from pathlib import Path

import typer

from robustune.cli.app import command, setup_logging


@command()
def verify(
    config: Path = typer.Argument(..., help="YAML preset whose data section names the image folders"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. --set data.root=/data/imagenet"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Check that every image of the train / val / test splits decodes (off at start-up: slow at scale)."""
    from robustune.config import ConfigError, load_config
    from robustune.data.splits import verify_splits

    setup_logging(verbose)
    report = verify_splits(load_config(config, set_).data)
    bad = 0
    for split, found in report.items():
        typer.echo(f"{split}: {found['n_files']} files, {len(found['unreadable'])} unreadable")
        for path in found["unreadable"]:
            typer.echo(f"  {path}")
        bad += len(found["unreadable"])
    if bad:
        raise ConfigError(f"{bad} unreadable file(s): remove or replace them, or set data.options.verify=true "
                          "to drop them when the dataset is built")
