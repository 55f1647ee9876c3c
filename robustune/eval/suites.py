"""Evaluation suites, registered by name, evaluated cell by cell and resumable per cell.

A suite is ``suite(ctx) -> iterable of (key, compute)``; ``compute()`` returns one :class:`Cell` or a
list of them. :func:`evaluate` skips keys already in ``results.json`` and rewrites the file
atomically after every cell, so an interrupted evaluation resumes where it stopped.

A cell is reused only if it was measured on the same inputs: every cell carries the fingerprint of
everything that changes its number besides its key (weights digest, data set, split, subset size
and seed, attack settings, suite options such as the corruption root). A cell of the same key
measured on other inputs is an error naming the differences, never a number silently reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from robustune.attacks import create_attack
from robustune.config import ConfigError, EvalConfig
from robustune.data.loading import LoaderOptions
from robustune.precision import resolve_precision
from robustune.eval.clean import predict
from robustune.eval.results import Cell, EvalResults, save_per_sample
from robustune.eval.robust import attack_outcomes
from robustune.registry import Registry
from robustune.files import folder_lock, tensors_sha256
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
    loader: LoaderOptions = field(default_factory=LoaderOptions)  # how batches are loaded (no number changes)
    precision: str = "fp32"  # resolved cfg.precision (robustune.precision)


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
        pred, y = predict(ctx.model, ctx.dataset, ctx.batch_size, ctx.device, loader=ctx.loader,
                          precision=ctx.precision)
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
                                            ctx.device, desc=key, seed=cfg.seed, loader=ctx.loader,
                                            precision=ctx.precision)
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


def task_suite(name: str, model: nn.Module) -> str:
    """``<name>@detection`` for a detector when registered (same suite names, detection cells).

    A suite declares the model tasks it serves in ``fn.tasks`` (default: classifiers only); a
    suite that does not serve the model's task is an error naming the suites that do.
    """
    task = getattr(model, "task", None) or "classification"
    if f"{name}@{task}" in SUITES:
        return f"{name}@{task}"
    if task not in getattr(SUITES.get(name), "tasks", ("classification",)):
        valid = sorted({n.split("@")[0] for n in SUITES.list()
                        if n.endswith(f"@{task}") or task in getattr(SUITES.get(n), "tasks", ("classification",))})
        raise ValueError(f"the {name!r} suite does not apply to a {task} model; valid: {', '.join(valid)}")
    return name


def fixed_subset(dataset: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A fixed, seeded evaluation subset of ``n`` images (RobustBench style), sorted by index."""
    if not n or n >= len(dataset):
        return dataset
    idx = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:n])
    return Subset(dataset, idx.tolist())


# Options that choose how a cell is computed, never its number (each has a test showing the cells
# are identical with and without it): left out of the fingerprint, so a resumed evaluation may
# switch them. ``cells_in_memory``: decode each corrupted cell once per process.
NUMBER_NEUTRAL_OPTIONS = frozenset({"cells_in_memory"})


def eval_inputs(model: nn.Module, dataset_info: dict[str, Any], cfg: EvalConfig,
                options: dict[str, Any], classes: list[str] | None = None) -> dict[str, Any]:
    """Everything besides a cell's key that changes its number (the cell fingerprint's content).

    The weights digest covers every persistent tensor; a CLIP head's class names and prompt
    templates are not tensors of its state dict, so they are recorded too.
    """
    options = {k: v for k, v in options.items() if k not in NUMBER_NEUTRAL_OPTIONS}
    head = {"classes": list(classes or []), "templates": list(getattr(model, "templates", None) or [])}
    # a reduced precision can change a number; fp32 adds no key, so earlier fp32 cells stay reusable
    reduced = {"precision": cfg.precision} if cfg.precision not in ("fp32", "auto") else {}
    return {**reduced,
        "weights_sha256": tensors_sha256(model.state_dict()),
        "head_sha256": hashlib.sha256(json.dumps(head).encode()).hexdigest(),
        "dataset": {k: dataset_info.get(k) for k in ("name", "root", "split", "n_images", "subset_seed")},
        "n_examples": cfg.n_examples,
        "seed": cfg.seed,
        "attack": {"pgd_alpha": cfg.pgd_alpha, "pgd_restarts": cfg.pgd_restarts},
        "options": json.loads(json.dumps(options, sort_keys=True, default=str)),
    }


def _fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _differences(old: dict[str, Any] | None, new: dict[str, Any], prefix: str = "") -> list[str]:
    if old is None:
        return ["its inputs were not recorded (results.json of an older robustune)"]
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} then, {b!r} now")
    return out


# Inputs every cell of one results.json shares (its top-level model and data set records).
SHARED_INPUTS = ("weights_sha256", "head_sha256", "dataset", "n_examples", "seed")


def _refuse(path: Path, what: str, diff: list[str]) -> None:
    raise ConfigError(
        f"{path} already holds {what} measured on other inputs ({'; '.join(diff[:4])}): its numbers "
        "would be reported for this evaluation. Write to another folder (--out DIR) or move that "
        "results.json away (nothing was changed)"
    )


def _check_same_model_and_data(results: EvalResults, inputs: dict[str, Any], path: Path) -> None:
    if not results.cells:
        return
    stored = next(iter(results.inputs.values()), None)
    old = {k: stored.get(k) for k in SHARED_INPUTS} if stored else None
    diff = _differences(old, {k: inputs[k] for k in SHARED_INPUTS})
    if diff:
        _refuse(path, f"{len(results.cells)} cell(s)", diff)


def _check_reusable(results: EvalResults, key: str, fingerprint: str, inputs: dict[str, Any],
                    path: Path) -> None:
    cell = results.cells[key]
    if cell.fingerprint != fingerprint:
        _refuse(path, f"cell {key!r}", _differences(results.inputs.get(cell.fingerprint or ""), inputs))


def evaluate(model: nn.Module, dataset: Dataset, cfg: EvalConfig, out_dir: str | Path, *,
             classes: list[str] | None = None, model_info: dict[str, Any] | None = None,
             dataset_info: dict[str, Any] | None = None, device: torch.device | str = "cpu",
             batch_size: int = 256, options: dict[str, Any] | None = None,
             loader: LoaderOptions | None = None) -> EvalResults:
    """Run ``cfg.suites`` on ``model`` on ``device``; resumes from ``out_dir/results.json``.

    ``cfg.precision`` (``auto`` resolved for ``device``) sets the precision policy of every suite;
    ``loader`` how batches are loaded (workers, decode backend), which changes no number.

    ``out_dir`` is locked for the run (a second process on it stops at once); a cell already in
    ``results.json`` is reused only if it was measured on the same inputs (see the module doc).
    """
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "results folder (--out)"):
        device = torch.device(device)
        cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))
        return _evaluate_locked(model, dataset, cfg, out_dir, classes, model_info, dataset_info,
                                device, batch_size, options or {}, loader or LoaderOptions())


def _evaluate_locked(model, dataset, cfg, out_dir, classes, model_info, dataset_info, device,
                     batch_size, options, loader) -> EvalResults:
    path = out_dir / "results.json"
    dataset = fixed_subset(dataset, cfg.n_examples, cfg.seed)
    info = {**(dataset_info or {}), "n_images": len(dataset), "subset_seed": cfg.seed if cfg.n_examples else None}
    if path.exists():
        results = EvalResults.load(path)
        log.info("resuming evaluation: %d cells already in %s", len(results.cells), path)
    else:
        results = EvalResults(model=model_info or {}, dataset=info, seed=cfg.seed,
                              environment=environment_record())
    results.environment["device"] = str(device)
    inputs = eval_inputs(model, info, cfg, options, classes)
    fingerprint = _fingerprint(inputs)
    _check_same_model_and_data(results, inputs, path)
    model = model.to(device)
    ctx = EvalContext(model=model, dataset=dataset, classes=classes or [], cfg=cfg,
                      device=device, out_dir=out_dir, results=results,
                      batch_size=batch_size, options=options, loader=loader, precision=cfg.precision)
    for suite in cfg.suites:
        for key, compute in SUITES.get(task_suite(suite, model))(ctx):
            if key in results.cells:
                _check_reusable(results, key, fingerprint, inputs, path)
                continue
            produced = compute()
            results.inputs[fingerprint] = inputs
            for cell in produced if isinstance(produced, list) else [produced]:
                cell.fingerprint = fingerprint
                results.cells[cell.key] = cell
                log.info("%s: %s = %.4f", cell.key, cell.metric, cell.value)
            results.save(path)
    results.checks = [c for name in CHECKS.list() for c in CHECKS.get(name)(results)]
    for check in results.checks:
        if not check["passed"]:
            log.warning("sanity check failed: %s (%s)", check["check"], check["detail"])
    results.save(path)
    return results
