"""The results folder as a store shared by processes: cell inputs, claims, commits, merges.

A cell is identified by its key and the fingerprint of what determines its number, nothing else
(ours, for the scale-out of issue 21): the weights and head digests, the data set and split, the
image subset, the attack settings (seed, step size, restarts, batch size: each batch draws its
own random start) and the suite options that change numbers (e.g. ``corruption_root``). Options
that only *select* cells (``corruptions``, ``severities``, ``attacks``, ...) or shape a summary
(``reference_results``, ``normalizer``, ...) are left out, so eight processes that each evaluate
two corruptions share one folder and an mCE reference given later reuses every stored cell.

Several processes (``--shard i/n`` on several machines, or simply two commands) may evaluate
into one folder: a cell is *claimed* (a :func:`robustune.files.folder_lock` on
``claims/<cell>/``, released when its holder exits, even on ``kill -9``) before it is computed
and committed under the results lock, so no cell is computed twice; ``results.json`` is
re-read under the lock before every change, so no process loses another's cells.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from robustune.config import ConfigError, EvalConfig
from robustune.errors import FolderLockedError
from robustune.eval.results import Cell, EvalResults, safe_name
from robustune.files import folder_lock, tensors_sha256

log = logging.getLogger(__name__)

# Options that choose which cells are computed or how a summary is formed, never a cell's number.
SELECTOR_OPTIONS = frozenset({
    "corruptions", "severities", "perturbations", "attacks", "sanity_eps0", "cells_in_memory",
    "reference_results", "normalizer", "alexnet_clean_error", "imagenet_p_reference",
    "imagenet_p_reference_t5d",
})
# What one results.json is about: a cell of another model or data set is refused, not stored.
SHARED_INPUTS = ("weights_sha256", "head_sha256", "dataset")
DATASET_FIELDS = ("name", "root", "split")
LOCK_WAIT_S = 120.0  # the results lock is held for a read or a write only


def shared_inputs(model: nn.Module, dataset_info: dict[str, Any], classes: list[str] | None) -> dict[str, Any]:
    """The model and data set of every cell of one results.json.

    The weights digest covers every persistent tensor; a CLIP head's class names and prompt
    templates are not tensors of its state dict, so they are recorded too.
    """
    head = {"classes": list(classes or []), "templates": list(getattr(model, "templates", None) or [])}
    return {"weights_sha256": tensors_sha256(model.state_dict()),
            "head_sha256": hashlib.sha256(json.dumps(head).encode()).hexdigest(),
            "dataset": {k: dataset_info.get(k) for k in DATASET_FIELDS}}


def cell_inputs(shared: dict[str, Any], suite_fn: Any, cfg: EvalConfig, options: dict[str, Any],
                n_images: int, batch_size: int) -> dict[str, Any]:
    """Everything that determines the numbers of one suite's cells (the fingerprint's content).

    A suite may declare ``fn.number_options`` (the options its numbers depend on; default: every
    option that is not a selector), ``fn.uses_seed = False`` when its numbers draw no random
    numbers (then the seed and the batch size matter only through the image subset) and
    ``fn.uses_subset = False`` when it evaluates data sets of its own (a corrupted copy,
    ImageNet-A), not the evaluated split's subset (``--n-examples``).
    """
    declared = getattr(suite_fn, "number_options", None)
    opts = {k: v for k, v in options.items()
            if k not in SELECTOR_OPTIONS and (declared is None or k in declared)}
    inputs = {**shared, "options": json.loads(json.dumps(opts, sort_keys=True, default=str))}
    if getattr(suite_fn, "uses_subset", True):
        inputs["subset"] = {"n_images": n_images, "n_examples": cfg.n_examples,
                            "subset_seed": cfg.seed if cfg.n_examples else None}
    if cfg.precision not in ("fp32", "auto"):  # a reduced precision can change a number; fp32 adds no key
        inputs["precision"] = cfg.precision
    if getattr(suite_fn, "uses_seed", True):
        inputs["attack"] = {"seed": cfg.seed, "pgd_alpha": cfg.pgd_alpha, "pgd_restarts": cfg.pgd_restarts,
                            "batch_size": batch_size}
    return inputs


def fingerprint_of(inputs: dict[str, Any]) -> str:
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


def stored_shared(results: EvalResults) -> dict[str, Any] | None:
    """The shared inputs the stored cells were measured on (None: no inputs recorded)."""
    stored = next(iter(results.inputs.values()), None)
    if stored is None:
        return None
    out = {k: stored.get(k) for k in SHARED_INPUTS}
    out["dataset"] = {k: (stored.get("dataset") or {}).get(k) for k in DATASET_FIELDS}
    return out


def check_same_model_and_data(results: EvalResults, shared: dict[str, Any], path: Path) -> None:
    """Refuse a results.json whose cells belong to another model or data set (nothing changed)."""
    if not results.store:
        return
    diff = _differences(stored_shared(results), shared)
    if diff:
        raise ConfigError(
            f"{path} already holds {len(results.store)} cell(s) measured on other inputs "
            f"({'; '.join(diff[:4])}): another model or data set. Write to another folder "
            "(--out DIR) or move that results.json away (nothing was changed)")


@contextlib.contextmanager
def waiting_lock(folder: Path, what: str, wait_s: float | None = None) -> Iterator[None]:
    """:func:`folder_lock` on ``folder``, retried for ``wait_s`` seconds while another holds it."""
    deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
    delay = 0.02
    while True:
        try:
            lock = folder_lock(folder, what)
            lock.__enter__()
            break
        except FolderLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


class ResultsStore:
    """``out_dir/results.json`` read and written under its lock (rank 0 only under torchrun)."""

    def __init__(self, out_dir: Path, new: EvalResults, shared: dict[str, Any] | None = None) -> None:
        self.out_dir, self.path = Path(out_dir), Path(out_dir) / "results.json"
        self.results, self.shared = new, shared
        self._claim: contextlib.ExitStack | None = None
        self._claim_path: Path | None = None

    def lock(self):
        return waiting_lock(self.out_dir, "results folder (--out)")

    def refresh(self) -> EvalResults:
        """Re-read results.json (call under :meth:`lock`), keeping this run's environment record."""
        if self.path.exists():
            env = self.results.environment
            self.results = EvalResults.load(self.path)
            self.results.environment = {**self.results.environment, **env}
        return self.results

    def claim(self, key: str, fingerprint: str) -> str:
        """``"stored"`` (already in results.json), ``"claimed"`` (another process computes it) or
        ``"mine"`` (claimed by this process until :meth:`commit` or :meth:`release`)."""
        with self.lock():
            if self.refresh().find(key, fingerprint) is not None:
                return "stored"
            check_same_model_and_data(self.results, self.shared, self.path)
            stack, folder = contextlib.ExitStack(), self._claim_dir(key, fingerprint)
            try:
                stack.enter_context(folder_lock(folder, "cell"))
            except FolderLockedError:
                return "claimed"
            self._claim, self._claim_path = stack, folder
            return "mine"

    def commit(self, cells: list[Cell], fingerprint: str, inputs: dict[str, Any]) -> None:
        """Add ``cells`` to results.json (re-read under the lock) and release the claim."""
        with self.lock():
            results = self.refresh()
            check_same_model_and_data(results, {k: inputs[k] for k in SHARED_INPUTS}, self.path)
            results.inputs[fingerprint] = inputs
            for cell in cells:
                cell.fingerprint = fingerprint
                results.add(cell)
            results.save(self.path)
        claimed = self._claim_path
        self.release()
        if claimed is not None:  # the cell is stored: its claim folder has done its work
            shutil.rmtree(claimed, ignore_errors=True)

    def release(self) -> None:
        if self._claim is not None:
            self._claim.close()
            self._claim = self._claim_path = None

    def _claim_dir(self, key: str, fingerprint: str) -> Path:
        return self.out_dir / "claims" / f"{safe_name(key)}@{fingerprint}"


def merge_results(out_dir: Path, sources: list[Path]) -> EvalResults:
    """Join the stores of ``sources`` (results folders) into ``out_dir`` (created or extended).

    Cells of one model and data set only; the same cell in two sources is kept once (a differing
    value is an error: the sources were not computed alike). Summary cells are not copied: the
    next ``robustune eval`` of the suite recomputes them from the stored cells, computing no cell.
    """
    store = ResultsStore(Path(out_dir), EvalResults(model={}, dataset={}, seed=0, environment={}))
    with store.lock():
        merged = store.refresh()
        for src in sources:
            path = Path(src) / "results.json" if Path(src).is_dir() else Path(src)
            res = EvalResults.load(path)
            shared = stored_shared(res)
            if shared is not None:
                check_same_model_and_data(merged, shared, store.path)
            if not merged.model:
                merged.model, merged.dataset, merged.seed = res.model, res.dataset, res.seed
                merged.environment = res.environment
            merged.inputs.update(res.inputs)
            for cell in res.store:
                if (cell.fingerprint or "").startswith("summary:"):
                    continue
                old = merged.find(cell.key, cell.fingerprint or "")
                if old is not None and old.value != cell.value:
                    raise ValueError(f"{path}: cell {cell.key!r} differs from the one already merged "
                                     f"({cell.value} vs {old.value}) on the same inputs; not merged")
                if old is None:
                    merged.add(cell)
            _copy_tree(path.parent / "per_sample", store.out_dir / "per_sample")
        merged.update_view()
        merged.save(store.path)
    return merged


def _copy_tree(src: Path, dst: Path) -> None:
    if src.is_dir() and src.resolve() != dst.resolve():
        shutil.copytree(src, dst, dirs_exist_ok=True)
