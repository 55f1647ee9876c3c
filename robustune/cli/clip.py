"""``robustune zeroshot``: make a run folder of an untrained (zero-shot) CLIP config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging


@command()
def zeroshot(
    config: Path = typer.Argument(..., help="YAML preset with method.name: zeroshot, e.g. configs/clip_tiny_digits_zeroshot.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. --set model.weights=/path/clip.safetensors"),
    out: Optional[Path] = typer.Option(None, help="run folder (default runs/<name>)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Write the run folder of a zero-shot CLIP, to evaluate with `robustune eval RUN`."""
    from robustune.config import load_config
    from robustune.runs.zeroshot import write_zeroshot_run

    setup_logging(verbose)
    cfg = load_config(config, set_)
    run_dir = write_zeroshot_run(cfg, out or Path("runs") / cfg.name)
    typer.echo(f"zero-shot run folder {run_dir}; evaluate it with `robustune eval {run_dir}`")
