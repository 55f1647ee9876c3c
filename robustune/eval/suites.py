"""Evaluation suites, registered by name, evaluated cell by cell and resumable per cell.

A suite is ``suite(ctx) -> iterable of (key, compute)``; ``compute()`` returns one :class:`Cell` or a
list of them. :func:`evaluate` skips cells already in ``results.json`` and rewrites the file
atomically after every cell, so an interrupted evaluation resumes where it stopped.

A cell is reused only if it was measured on the same inputs: every cell carries the fingerprint of
everything that changes its number besides its key (weights digest, data set, split, subset size
and seed, attack settings, suite options such as the corruption root; :mod:`robustune.eval.store`).
A cell of the same key measured on other inputs (another subset size, say) is computed and kept
beside it, never a number silently reused; the report reads the one with the most images.
Under torch.distributed each cell's images are dealt to the ranks and rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from robustune import distributed as dist
from robustune.attacks import create_attack
from robustune.config import EvalConfig
from robustune.data.loading import LoaderOptions
from robustune.precision import resolve_precision
from robustune.eval.clean import predict
from robustune.eval.results import Cell, EvalResults, safe_name, save_per_sample
from robustune.eval.robust import attack_outcomes
from robustune.eval.store import (
    ResultsStore,
    cell_inputs,
    check_same_model_and_data,
    fingerprint_of,
    shared_inputs,
)
from robustune.registry import Registry
from robustune.preemption import Preempted, StopSignals
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
    fingerprint: str | None = None  # of the cell being computed (names its per-sample and state files)

    def save_per_sample(self, key: str, **tensors: torch.Tensor) -> None:
        """Per-sample outcomes of the cell being computed (rank 0 writes)."""
        if dist.is_main_process():
            save_per_sample(self.out_dir, key, self.fingerprint, **tensors)

    def state_path(self, key: str) -> Path:
        """The per-batch state file of the cell being computed (AutoAttack, attacks)."""
        tag = f"@{self.fingerprint}" if self.fingerprint else ""
        return self.out_dir / "state" / f"{safe_name(key)}{tag}.json"
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
        ctx.save_per_sample("clean", correct=correct, pred=pred, label=y)
        return Cell.from_outcomes("clean", "clean", "top1_accuracy", correct)

    yield "clean", compute


clean_suite.uses_seed = False  # no random draws: the seed matters only through the subset
clean_suite.number_options = ()


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
            clean, robust = attack_outcomes(ctx.model, ctx.dataset, attack, ctx.batch_size, ctx.device,
                                            desc=key, seed=cfg.seed, state_path=ctx.state_path(key),
                                            loader=ctx.loader, precision=ctx.precision)
            ctx.save_per_sample(key, correct=robust)
            threat = {"norm": "Linf", "eps": eps, "eps_label": eps_label(eps), "steps": cfg.pgd_steps,
                      "step_size": alpha, "restarts": cfg.pgd_restarts, "random_start": True,
                      "loss": "ce"}
            return Cell.from_outcomes(key, "pgd", "robust_accuracy", robust, threat_model=threat,
                                      clean_accuracy=clean.float().mean().item())

        yield key, compute


pgd_suite.number_options = ()


@CHECKS.register("robust_le_clean")
def robust_le_clean(results: EvalResults) -> list[dict[str, Any]]:
    """Each robust accuracy ≤ the clean accuracy of the same points: the clean cell when it has the
    same n, else (cells of another subset size in the store) the clean accuracy the attack measured."""
    if "clean" not in results.cells:
        return []
    clean_cell = results.cells["clean"]
    out = []
    for key, cell in results.cells.items():
        if cell.metric == "robust_accuracy":
            same = cell.n == clean_cell.n or "clean_accuracy" not in cell.details
            clean = clean_cell.value if same else float(cell.details["clean_accuracy"])
            ok = cell.value <= clean + 1e-9
            out.append({"check": "robust <= clean", "cell": key, "passed": ok,
                        "detail": f"robust {cell.value:.4f} vs clean {clean:.4f}"
                                  + ("" if same else f" (the attack's own clean pass, n = {cell.n})")})
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


SUMMARY_KEY = re.compile(r"(^|/)summary(/|$)")


def is_summary(key: str) -> bool:
    """A yielded key whose cells are derived from the stored ones (mCE, mPC, mFR, ...)."""
    return bool(SUMMARY_KEY.search(key))


def evaluate(model: nn.Module, dataset: Dataset, cfg: EvalConfig, out_dir: str | Path, *,
             classes: list[str] | None = None, model_info: dict[str, Any] | None = None,
             dataset_info: dict[str, Any] | None = None, device: torch.device | str = "cpu",
             batch_size: int = 256, options: dict[str, Any] | None = None,
             shard: tuple[int, int] = (0, 1), loader: LoaderOptions | None = None) -> EvalResults:
    """Run ``cfg.suites`` on ``model`` on ``device`` into ``out_dir/results.json``, cell by cell.

    A cell already stored with the same inputs is reused (:mod:`robustune.eval.store`); cells of
    other inputs (e.g. another image subset) stay beside it. ``shard=(i, n)`` computes every n-th
    cell (counted over the cells of the suites, summaries excepted), so processes on several
    machines share the work; any process skips a cell another has claimed. Under torch.distributed
    every rank runs this with the same arguments: each cell's images are dealt to the ranks, rank 0
    alone reads and writes the folder, and every rank returns the same results. On SIGTERM /
    SIGUSR1 the current cell is finished and stored, then :class:`Preempted` is raised (a rerun
    goes on from the next cell).

    ``cfg.precision`` (``auto`` resolved for ``device``) sets the precision policy of every suite
    (a reduced one is an input of the cells' fingerprint); ``loader`` how batches are loaded
    (workers, decode backend), which changes no number.
    """
    out_dir = Path(out_dir)
    device = torch.device(device)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"--shard {i}/{n}: the shard index must be in 0..{n - 1} (e.g. --shard 0/{n})")
    with StopSignals() as stop:
        dataset = fixed_subset(dataset, cfg.n_examples, cfg.seed)
        info = {**(dataset_info or {}), "n_images": len(dataset), "subset_seed": cfg.seed if cfg.n_examples else None}
        shared = shared_inputs(model, info, classes)
        main = dist.is_main_process()
        store = ResultsStore(out_dir, EvalResults(model=model_info or {}, dataset=info, seed=cfg.seed,
                                                  environment={**environment_record(), "device": str(device)}), shared)
        if main:
            with store.lock():
                store.refresh()
        results = dist.broadcast_object(store.results if main else None)
        check_same_model_and_data(results, shared, store.path)
        model = model.to(device)
        ctx = EvalContext(model=model, dataset=dataset, classes=classes or [], cfg=cfg, device=device,
                          out_dir=out_dir, results=results, batch_size=batch_size, options=options or {},
                          loader=loader or LoaderOptions(), precision=cfg.precision)
        summaries, j = [], 0
        for suite in cfg.suites:
            fn = SUITES.get(task_suite(suite, model))
            inputs = cell_inputs(shared, fn, cfg, ctx.options, len(dataset), batch_size)
            fingerprint = fingerprint_of(inputs)
            for key, compute in fn(ctx):
                if is_summary(key):  # derived from the stored cells at the end, by every process
                    summaries.append((key, compute))
                    continue
                if j % n == i:
                    _evaluate_cell(ctx, store, key, compute, fingerprint, inputs)
                    if dist.broadcast_object(stop.requested if main else None):
                        # SIGTERM / SIGUSR1: the cell is stored, stop here (rank 0 decides for all ranks)
                        raise Preempted(f"stopped by {stop.name or 'a stop signal (on rank 0)'} after cell {key}; the cells "
                                        f"computed so far are stored in {store.path}")
                j += 1
        if main:
            with store.lock():
                ctx.results = store.refresh()
                for key, compute in summaries:
                    produced = compute()
                    ctx.results.replace_summary(f"summary:{key}", produced if isinstance(produced, list) else [produced])
                _run_checks(ctx.results)
                ctx.results.save(store.path)
        return dist.broadcast_object(ctx.results if main else None)


def _evaluate_cell(ctx: EvalContext, store: ResultsStore, key: str, compute, fingerprint: str,
                   inputs: dict[str, Any]) -> None:
    """Claim, compute (every rank) and commit (rank 0) one cell, unless stored or claimed."""
    decision = store.claim(key, fingerprint) if dist.is_main_process() else None
    decision = dist.broadcast_object(decision)
    if decision != "mine":
        log.info("%s: %s", key, "already stored" if decision == "stored" else "computed by another process")
        return
    try:
        ctx.fingerprint = fingerprint
        produced = compute()
        cells = produced if isinstance(produced, list) else [produced]
        if dist.is_main_process():
            store.commit(cells, fingerprint, inputs)
        for cell in cells:
            log.info("%s: %s = %.4f (n = %s)", cell.key, cell.metric, cell.value, cell.n)
    finally:
        store.release()


def _run_checks(results: EvalResults) -> None:
    results.checks = [c for name in CHECKS.list() for c in CHECKS.get(name)(results)]
    for check in results.checks:
        if not check["passed"]:
            log.warning("sanity check failed: %s (%s)", check["check"], check["detail"])
