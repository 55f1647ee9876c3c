"""Core commands: train, eval, list, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from robustune.cli.app import USER_ERRORS, command, fail, setup_logging


@command()
def train(
    config: Path = typer.Argument(..., help="YAML preset, e.g. configs/erm_digits.yaml"),
    set_: list[str] = typer.Option([], "--set", help="override, e.g. --set optim.lr=0.01"),
    out: Optional[Path] = typer.Option(None, help="run folder (default runs/<name>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint in the run folder"),
    nproc: int = typer.Option(1, help="processes on this node (wraps torchrun)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Train a model with the method and recipe of CONFIG."""
    from robustune.config import load_config
    from robustune.engine import train as run_training

    setup_logging(verbose)
    cfg = load_config(config, set_)
    run_dir = out or Path("runs") / cfg.name
    if nproc > 1:
        from robustune.cli.launch import launch_torchrun

        raise typer.Exit(launch_torchrun(nproc, config, set_, run_dir, resume))
    result = run_training(cfg, run_dir, resume=resume)
    if result.already_finished:
        typer.echo(f"{result.run_dir} already finished ({cfg.train.epochs} epoch"
                   f"{'s' if cfg.train.epochs != 1 else ''}): nothing was changed")
        return
    typer.echo(f"trained {cfg.method.name} into {result.run_dir} (val accuracy {result.val_accuracy})")


@command("eval")
def eval_cmd(
    run: Path = typer.Argument(..., help="a run folder (config.yaml + model.safetensors)"),
    suite: str = typer.Option("clean,pgd", help="comma-separated suites; see `robustune list suites`"),
    eps: str = typer.Option("8/255", help="comma-separated L∞ radii, e.g. 1/255,4/255"),
    steps: int = typer.Option(10, help="PGD steps"),
    attacks: str = typer.Option("", help="attacks of the adversarial suite, e.g. pgd100,autoattack"),
    n_examples: Optional[int] = typer.Option(None, help="fixed seeded subset of the evaluation split"),
    split: Optional[str] = typer.Option(None, help="split to evaluate (default: the run's data.test_split)"),
    out: Optional[Path] = typer.Option(None, help="results folder (default RUN/eval)"),
    option: list[str] = typer.Option([], "--option", help="suite option key=value, e.g. corruption_root=DIR"),
    seed: int = typer.Option(0),
    device: Optional[str] = typer.Option(None, help="cpu | cuda | cuda:N | auto (default: the run's train.device)"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """Evaluate a trained model; results.json is resumable per cell."""
    from robustune.cli.evaluation import eval_config, parse_list, parse_options
    from robustune.runs import evaluate_run, load_run_config

    setup_logging(verbose)
    cfg = load_run_config(run)
    ecfg = eval_config(suite, eps, steps, n_examples, split or cfg.data.test_split, seed)
    options = parse_options(option)
    if attacks:
        options["attacks"] = parse_list(attacks)
    results = evaluate_run(run, ecfg, out, cfg=cfg, device=device, options=options).results
    for key, cell in results.cells.items():
        typer.echo(f"{key:55s} {cell.metric:28s} {cell.value:.4f}")
    if results.checks:
        failed = [c for c in results.checks if not c["passed"]]
        typer.echo(f"sanity checks: {len(results.checks) - len(failed)} passed, {len(failed)} failed")
        for c in failed:
            typer.echo(f"  FAILED {c['check']}: {c['cell']} ({c['detail']})")


LIST_KINDS = "models | clip-models | detectors | datasets | methods | attacks | corruptions | suites"


@command("list")
def list_cmd(kind: str = typer.Argument(..., help=LIST_KINDS),
             pattern: str = typer.Option("*", help="wildcard filter")) -> None:
    """List registered names."""
    from robustune.registry import unknown_choice_message

    listers = _listers()
    if kind not in listers:
        fail(unknown_choice_message("kind", kind, listers))
    for name in listers[kind](pattern):
        typer.echo(name)


def _listers():
    from robustune.attacks import list_attacks
    from robustune.clip import list_clip_models
    from robustune.corruptions import list_corruptions
    from robustune.data import list_datasets
    from robustune.eval import list_suites
    from robustune.methods import list_methods
    from robustune.models import list_models
    from robustune.models.detectors import list_detector_archs

    def models(pattern: str) -> list[str]:  # project models, then every timm model (all work)
        import timm

        return list_models(pattern) + [f"{name}  (timm)" for name in timm.list_models(pattern)]

    def clip_models(pattern: str) -> list[str]:  # model.name: clip:<architecture>
        return [f"clip:{name}" for name in list_clip_models(pattern)]

    def detectors(pattern: str) -> list[str]:  # model.name: det:<backbone>, model.kwargs.arch
        return [f"{arch}  (model.name: det:<backbone>, model.kwargs.arch: {arch})"
                for arch in list_detector_archs(pattern)]

    return {"models": models, "clip-models": clip_models, "detectors": detectors, "datasets": list_datasets,
            "methods": list_methods, "attacks": list_attacks, "corruptions": list_corruptions,
            "suites": list_suites}


@command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="demo folder"),
    quick: bool = typer.Option(False, help="a few epochs only (smoke test; accuracy not meaningful)"),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="include the CLIP / ER-APT stage"),
    verbose: bool = typer.Option(False, "-v"),
) -> None:
    """The whole pipeline on the built-in digits: pre-train, robustify, evaluate, report."""
    import time

    from rich.console import Console

    from robustune.cli.demo_console import RichProgress, demo_logging, final_lines
    from robustune.demo import run_demo

    started = time.perf_counter()
    console = Console()
    console.print(f"robustune demo{' --quick' if quick else ''} → {out}/  (details in {out / 'demo.log'})")
    ui = RichProgress(console)
    error = None
    with demo_logging(out / "demo.log", verbose):
        try:
            with ui.progress:
                result = run_demo(out, quick=quick, clip=clip, progress=ui)
        except USER_ERRORS as exc:
            error = exc  # reported once stderr is the console again
    if error is not None:
        fail(f"{error} (details in {out / 'demo.log'}; run again to resume)")
    for line in final_lines(result, started):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
