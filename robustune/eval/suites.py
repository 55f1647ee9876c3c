"""Evaluation suites, registered by name, evaluated cell by cell and resumable per cell.

A suite is ``suite(ctx) -> iterable of (key, compute)``; ``compute()`` returns one :class:`Cell` or a
list of them. :func:`evaluate` skips keys already in ``results.json`` and rewrites the file
atomically after every cell, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from robustune.attacks import create_attack
from robustune.config import EvalConfig
from robustune.eval.clean import predict
from robustune.eval.results import Cell, EvalResults, save_per_sample
from robustune.eval.robust import attack_outcomes
from robustune.registry import Registry
from robustune.utils import environment_record

log = logging.getLogger(__name__)


@dataclass
class EvalContext:
    model: nn.Module
    dataset: Dataset
    classes: list[str]
    cfg: EvalConfig
    device: torch.device
    out_dir: Path
    results: EvalResults
    batch_size: int = 256
    options: dict[str, Any] = field(default_factory=dict)


SuiteFn = Callable[[EvalContext], Iterable[tuple[str, Callable[[], Cell | list[Cell]]]]]
SUITES: Registry[SuiteFn] = Registry("evaluation suite")
CHECKS: Registry[Callable[[EvalResults], list[dict[str, Any]]]] = Registry("sanity check")
register_suite = SUITES.register


def list_suites(pattern: str = "*") -> list[str]:
    return SUITES.list(pattern)


def eps_label(eps: float) -> str:
    """8/255-style label when eps is a multiple of 1/255, else the float."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.6g}"


@register_suite("clean")
def clean_suite(ctx: EvalContext):
    def compute() -> Cell:
        pred, y = predict(ctx.model, ctx.dataset, ctx.batch_size, ctx.device)
        correct = pred == y
        save_per_sample(ctx.out_dir, "clean", correct=correct, pred=pred, label=y)
        return Cell.from_outcomes("clean", "clean", "top1_accuracy", correct)

    yield "clean", compute


def pgd_key(eps: float, steps: int, norm: str = "Linf") -> str:
    return f"pgd/{norm}/eps={eps_label(eps)}/steps={steps}"


@register_suite("pgd")
def pgd_suite(ctx: EvalContext):
    cfg = ctx.cfg
    for eps in cfg.eps:
        key = pgd_key(eps, cfg.pgd_steps)

        def compute(eps: float = eps, key: str = key) -> Cell:
            alpha = cfg.pgd_alpha if cfg.pgd_alpha is not None else 2.5 * eps / max(cfg.pgd_steps, 1)
            attack = create_attack("pgd", ctx.model, eps=eps, steps=cfg.pgd_steps, alpha=alpha,
                                   restarts=cfg.pgd_restarts, seed=cfg.seed)
            clean, robust = attack_outcomes(ctx.model, ctx.dataset, attack, ctx.batch_size,
                                            ctx.device, desc=key, seed=cfg.seed)
            save_per_sample(ctx.out_dir, key, correct=robust)
            threat = {"norm": "Linf", "eps": eps, "eps_label": eps_label(eps), "steps": cfg.pgd_steps,
                      "step_size": alpha, "restarts": cfg.pgd_restarts, "random_start": True,
                      "loss": "ce"}
            return Cell.from_outcomes(key, "pgd", "robust_accuracy", robust, threat_model=threat,
                                      clean_accuracy=clean.float().mean().item())

        yield key, compute


@CHECKS.register("robust_le_clean")
def robust_le_clean(results: EvalResults) -> list[dict[str, Any]]:
    if "clean" not in results.cells:
        return []
    clean = results.cells["clean"].value
    out = []
    for key, cell in results.cells.items():
        if cell.metric == "robust_accuracy":
            ok = cell.value <= clean + 1e-9
            out.append({"check": "robust <= clean", "cell": key, "passed": ok,
                        "detail": f"robust {cell.value:.4f} vs clean {clean:.4f}"})
    return out


def fixed_subset(dataset: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A fixed, seeded evaluation subset of ``n`` images (RobustBench style), sorted by index."""
    if not n or n >= len(dataset):
        return dataset
    idx = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n])
    return Subset(dataset, idx.tolist())


def evaluate(model: nn.Module, dataset: Dataset, cfg: EvalConfig, out_dir: str | Path, *,
             classes: list[str] | None = None, model_info: dict[str, Any] | None = None,
             dataset_info: dict[str, Any] | None = None, device: torch.device | str = "cpu",
             batch_size: int = 256, options: dict[str, Any] | None = None) -> EvalResults:
    """Run ``cfg.suites`` on ``model``; resumes from ``out_dir/results.json`` when present."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    dataset = fixed_subset(dataset, cfg.n_examples, cfg.seed)
    info = {**(dataset_info or {}), "n_images": len(dataset), "subset_seed": cfg.seed if cfg.n_examples else None}
    if path.exists():
        results = EvalResults.load(path)
        log.info("resuming evaluation: %d cells already in %s", len(results.cells), path)
    else:
        results = EvalResults(model=model_info or {}, dataset=info, seed=cfg.seed,
                              environment=environment_record())
    model = model.to(device)
    ctx = EvalContext(model=model, dataset=dataset, classes=classes or [], cfg=cfg,
                      device=torch.device(device), out_dir=out_dir, results=results,
                      batch_size=batch_size, options=options or {})
    for suite in cfg.suites:
        for key, compute in SUITES.get(suite)(ctx):
            if key in results.cells:
                continue
            produced = compute()
            for cell in produced if isinstance(produced, list) else [produced]:
                results.cells[cell.key] = cell
                log.info("%s: %s = %.4f", cell.key, cell.metric, cell.value)
            results.save(path)
    results.checks = [c for name in CHECKS.list() for c in CHECKS.get(name)(results)]
    for check in results.checks:
        if not check["passed"]:
            log.warning("sanity check failed: %s (%s)", check["check"], check["detail"])
    results.save(path)
    return results
