"""Robustness commands: corrupt (generate X-C), analyze (GFN Sec. 3.1 plots), report (HTML/Markdown)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import command, setup_logging


@command()
def corrupt(
    dataset: str = typer.Argument(..., help="a registered dataset (e.g. digits) or an image folder root/<class>/<file>"),
    out: Path = typer.Option(..., "--out", help="output folder (<corruption>/<severity>/<class>/<file>)"),
    corruptions: str = typer.Option("common", help="common | all | extra | noise | blur | weather | digital | names,..."),
    severities: str = typer.Option("1-5", help="e.g. 1-5 or 1,3,5"),
    split: str = typer.Option("test", help="split of a registered dataset"),
    root: Optional[str] = typer.Option(None, help="data root of a registered dataset that needs one"),
    image_format: str = typer.Option("auto", "--format", help="auto (JPEG for JPEG sources, else PNG) | jpeg | png"),
    jpeg_quality: int = typer.Option(85, help="JPEG quality (85 = ImageNet-C's)"),
    workers: Optional[int] = typer.Option(None, help="parallel worker processes (default: every core available)"),
    seed: int = typer.Option(0, help="base seed; each (image, corruption, severity) derives its own"),
    option: list[str] = typer.Option([], "--option", help="dataset option key=value, e.g. n_images=50 (digits_det)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Write corrupted copies of DATASET; resumable (existing files are kept), deterministic per seed.

    A detection dataset (e.g. digits_det, coco) is written in the Michaelis et al. 2019 layout,
    ``OUT/<corruption>/<severity>/<image>`` + ``OUT/annotations.json`` (boxes unchanged).
    """
    from robustune.corruptions import corrupt_dataset

    setup_logging(verbose)
    from robustune.data import create_dataset, list_datasets

    if dataset not in list_datasets() and Path(dataset).is_dir():
        source, info = dataset, None
    else:
        from robustune.cli.evaluation import parse_options

        opts = parse_options(option)
        source = create_dataset(dataset, split, root=root, **opts)
        info = {"dataset": dataset, "split": split, **({"root": root} if root else {}), **opts}
    quality = {"auto": "auto", "jpeg": jpeg_quality, "png": None}.get(image_format.lower(), "?")
    if quality == "?":
        raise ValueError(f"--format {image_format!r}: valid: auto, jpeg, png")
    report = corrupt_dataset(source, out, corruptions, severities, seed=seed, jpeg_quality=quality,
                             workers=workers, source_info=info)
    typer.echo(f"{report.n_images} images: wrote {report.written} files, kept {report.existing} existing, "
               f"{len(report.failed)} unreadable source(s) skipped, {report.seconds:.1f} s -> {out}")


@command()
def report(
    runs: list[Path] = typer.Argument(..., help="run folders, eval folders or results.json files"),
    out: Path = typer.Option(Path("report.html"), "--out", help="report.html or report.md"),
    title: str = typer.Option("Robustness report", help="report title"),
    report_to: str = typer.Option("", help="trackers (tensorboard, wandb) that get the figures "
                                  "of a Markdown report (its PNGs), logged under OUT's folder"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Compare several models' results.json side by side (tables, best per column, plots embedded)."""
    import time

    from robustune.report import write_report
    from robustune.tracking import Trackers, check_report_to

    setup_logging(verbose)
    started = time.time()
    trackers = check_report_to(report_to.split(","))
    path = write_report(runs, out, title=title)
    typer.echo(f"report: {path}")
    if trackers:
        figures = sorted(p for p in path.parent.glob("*.png") if p.stat().st_mtime >= started - 1)
        with Trackers(trackers, path.parent, path.stem, job_type="report") as t:
            t.images(figures)
        typer.echo(f"{len(figures)} figure(s) sent to {', '.join(trackers)}")


@command()
def analyze(
    runs: list[Path] = typer.Argument(..., help="one or two run folders (config.yaml + weights)"),
    corruption_root: Path = typer.Option(..., help="a corrupted set (<corruption>/<severity>/<class>/<file>)"),
    out: Path = typer.Option(Path("analysis"), "--out", help="folder for PNG plots + JSON data"),
    corruptions: str = typer.Option("common", help="corruptions to analyse (those present are used)"),
    severity: int = typer.Option(3, help="severity of the error-rank and intensity analyses"),
    split: Optional[str] = typer.Option(None, help="clean split (default: the run's data.test_split)"),
    shared_similarity: bool = typer.Option(False, help="rank all models' mistakes by the first run's similarity"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """GFN Sec. 3.1: error-rank histograms, similarity heatmaps, pixel-intensity histograms."""
    from robustune.analyze import analyze_runs

    setup_logging(verbose)
    written = analyze_runs(runs, corruption_root, out, corruptions=corruptions, severity=severity,
                           split=split, shared_similarity=shared_similarity)
    for path in written:
        typer.echo(str(path))
