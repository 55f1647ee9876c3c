"""``robustune export``: a run as a timm / Hub model folder with its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, fail, setup_logging


@command()
def export(
    run: Path = typer.Argument(..., help="a trained (and evaluated) run folder"),
    out: Path = typer.Option(..., help="new folder to write (config.json, model.safetensors, README.md, ...)"),
    license: str = typer.Option("other", help="the model card's license field (e.g. apache-2.0; the "
                                "base weights' license binds a fine-tuned model)"),
    results: Optional[Path] = typer.Option(None, help="results.json or eval folder (default: the run's)"),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="then upload the folder to this "
                                              "Hugging Face model repo (USER/NAME; needs a token)"),
    private: bool = typer.Option(False, help="create the Hub repo private"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Export RUN so that timm (``timm.create_model("local-dir:OUT", pretrained=True)``) or robustune
    (CLIP prompt runs) loads it, with a model card giving every number with its protocol."""
    from robustune.report.export import export_run
    from robustune.report.export import push_to_hub as push

    setup_logging(verbose)
    done = export_run(run, out, license=license, results=results)
    typer.echo(f"{done.kind} export → {out}/ ({', '.join(done.files)})")
    if done.max_logit_difference is not None:
        typer.echo(f"timm reloads it: max |logit difference| {done.max_logit_difference:.2g} on 4 random images")
    if push_to_hub:
        try:
            typer.echo(f"uploaded: {push(out, push_to_hub, private=private)}")
        except Exception as exc:  # network, token, permissions: the export itself is kept
            fail(f"upload to {push_to_hub} failed ({exc.__class__.__name__}: {exc}); the export in {out} is "
                 "kept: log in (huggingface-cli login or HF_TOKEN) and retry")
