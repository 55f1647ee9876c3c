"""Paired comparison of evaluated runs: is "A beats B" a real difference at this n?

Two models evaluated on the same images are compared image by image from the per-image outcomes
every evaluation cell stores (``Cell.outcomes``; ``per_sample/`` files of older results):

- an accuracy cell (clean, PGD, AutoAttack, one corruption at one severity, ...): the exact McNemar
  test (:func:`robustune.eval.stats.mcnemar_exact`);
- mean corruption accuracy and mCE: a paired bootstrap over images
  (:func:`robustune.eval.stats.paired_bootstrap`); the mCE normaliser (reference model or AlexNet
  errors) is a constant, as in the mCE definition (Hendrycks & Dietterich 2019);
- folders of seeds (ablation cells ``...seed=N``, few-shot ``seedN``): per-seed paired differences
  with the count of seeds in each direction.

p-values are Holm-adjusted within a family (our choice): the headline cells (clean, attacks,
corruption summaries) form one family, the single (corruption, severity) cells another, so 45
corruption cells do not make a chance difference look resolved. Compute per method comes from
run.json (``compute``: passes and seconds per step, see robustune.engine.cost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robustune.eval.results import EvalResults, load_per_sample
from robustune.eval.stats import mcnemar_exact, paired_bootstrap
from robustune.files import read_json
from robustune.report.seeds import seed_mean_std

ALPHA = 0.05
SEED_DIR = re.compile(r"(?:^|__)seed[=_-]?(\d+)$")
SAME_IMAGES = ("name", "split", "n_images", "subset_seed")


@dataclass
class Evaluated:
    """One evaluated model: its results, the folder holding them, and its run folder."""

    label: str
    results: EvalResults
    results_dir: Path
    run_dir: Path | None

    def outcomes(self, key: str) -> np.ndarray | None:
        cell = self.results.cells[key]
        stored = cell.outcome_array()
        if stored is not None:
            return stored
        try:
            return load_per_sample(self.results_dir, key)["correct"].numpy().astype(bool)
        except (OSError, KeyError, RuntimeError):
            return None

    def run_record(self) -> dict[str, Any]:
        path = self.run_dir / "run.json" if self.run_dir else None
        return read_json(path) if path and path.is_file() else {}


@dataclass
class CellComparison:
    key: str
    metric: str
    a: float
    b: float
    n: int | None
    test: str  # "McNemar", "paired bootstrap", or "unpaired" (with ``note``)
    p_value: float | None = None
    p_adjusted: float | None = None
    family: str = "headline"
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def verdict(self) -> str:
        if self.p_adjusted is None:
            return f"not tested ({self.note})" if self.note else "not tested"
        return (f"resolved (p = {self.p_adjusted:.2g})" if self.p_adjusted < ALPHA
                else f"not resolved at this n (p = {self.p_adjusted:.2g})")


@dataclass
class SeedComparison:
    key: str
    differences: dict[int, float]  # seed → A − B

    @property
    def a_better(self) -> int:
        return sum(d > 0 for d in self.differences.values())

    @property
    def b_better(self) -> int:
        return sum(d < 0 for d in self.differences.values())

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.differences.values())))

    @property
    def std(self) -> float:
        """Sample std (n − 1) of the paired differences over seeds, as every seed table of robustune."""
        return seed_mean_std(list(self.differences.values()))[1]


@dataclass
class Comparison:
    a: str
    b: str
    cells: list[CellComparison] = field(default_factory=list)
    seeds: list[SeedComparison] = field(default_factory=list)
    compute: dict[str, dict[str, Any]] = field(default_factory=dict)
    compute_note: str = ""


def find_results(path: str | Path) -> tuple[Path, Path | None]:
    """(folder of results.json, run folder) for a results file, an eval folder, a run folder with
    ``eval/``, or a run folder whose evaluation sits at ``../eval/<name>/`` (the demo's layout)."""
    path = Path(path)
    if path.is_file() and path.name == "results.json":
        return path.parent, None
    for folder, run in ((path, None), (path / "eval", path), (path.parent / "eval" / path.name, path)):
        if (folder / "results.json").is_file():
            if run is None and (path / "run.json").is_file():
                run = path
            return folder, run
    raise FileNotFoundError(f"no results.json for {str(path)!r} (looked in {path}/, {path}/eval/ and "
                            f"{path.parent}/eval/{path.name}/); evaluate it first: robustune eval {path}")


def load_evaluated(path: str | Path) -> Evaluated:
    folder, run = find_results(path)
    results = EvalResults.load(folder / "results.json")
    label = str(results.model.get("run_name") or (run or folder).name)
    return Evaluated(label, results, folder, run)


def _same_images(a: Evaluated, b: Evaluated) -> str:
    """Why the two evaluations are not on the same images ('' when they are)."""
    da, db = a.results.dataset, b.results.dataset
    diff = [k for k in SAME_IMAGES if da.get(k) != db.get(k)]
    return "different images (" + ", ".join(f"{k}: {da.get(k)!r} vs {db.get(k)!r}" for k in diff) + ")" if diff else ""


def _is_headline(key: str, metric: str) -> bool:
    return not (metric == "top1_accuracy" and key.startswith("corruptions/") and key.count("/") >= 2)


def accuracy_cells(a: Evaluated, b: Evaluated, keys: list[str] | None = None) -> list[CellComparison]:
    """McNemar for every accuracy cell both evaluations hold (the same images, outcomes stored)."""
    why_not = _same_images(a, b)
    out = []
    for key, ca in a.results.cells.items():
        cb = b.results.cells.get(key)
        if keys is not None and key not in keys:
            continue
        if cb is None or ca.metric != cb.metric or ca.metric not in ("top1_accuracy", "robust_accuracy"):
            continue
        family = "headline" if _is_headline(key, ca.metric) else "corruption cells"
        cmp = CellComparison(key, ca.metric, ca.value, cb.value, ca.n, "unpaired", family=family)
        oa, ob = a.outcomes(key), b.outcomes(key)
        if why_not:
            cmp.note = why_not
        elif oa is None or ob is None or oa.shape != ob.shape:
            cmp.note = "per-image outcomes not stored (re-evaluate with this robustune)"
        else:
            test = mcnemar_exact(oa, ob)
            cmp.test, cmp.p_value = "McNemar", test["p_value"]
            cmp.detail = {"only_a": test["only_a"], "only_b": test["only_b"]}
        out.append(cmp)
    return out


def _corruption_matrix(ev: Evaluated, keys: list[str]) -> np.ndarray | None:
    rows = [ev.outcomes(k) for k in keys]
    if any(r is None for r in rows) or len({r.shape for r in rows}) != 1:
        return None
    return np.stack(rows).astype(float)  # (cells, images), 1 = correct


def _corruption_keys(ev: Evaluated) -> dict[str, tuple[str, int]]:
    return {k: (c.details["corruption"], int(c.details["severity"])) for k, c in ev.results.cells.items()
            if c.suite == "corruptions" and c.metric == "top1_accuracy" and "corruption" in c.details}


def corruption_summaries(a: Evaluated, b: Evaluated, samples: int = 2000,
                         seed: int = 0) -> list[CellComparison]:
    """Paired bootstrap of the mean-corruption-accuracy and mCE differences (images resampled)."""
    ka, kb = _corruption_keys(a), _corruption_keys(b)
    keys = sorted(set(ka) & set(kb))
    if not keys:
        return []
    n = a.results.cells[keys[0]].n
    ma, mb = _corruption_matrix(a, keys), _corruption_matrix(b, keys)
    note = _same_images(a, b) or ("" if ma is not None and mb is not None and ma.shape == mb.shape
                                  else "per-image outcomes not stored (re-evaluate with this robustune)")
    mca = CellComparison("corruptions/mean_corruption_accuracy", "mean_corruption_accuracy",
                         float(np.mean([a.results.cells[k].value for k in keys])),
                         float(np.mean([b.results.cells[k].value for k in keys])), n, "unpaired",
                         detail={"cells": len(keys)}, note=note)
    out = [mca]
    if not note:
        boot = paired_bootstrap((ma - mb).mean(0), samples=samples, seed=seed)
        mca.test, mca.p_value = "paired bootstrap", boot["p_value"]
        mca.detail.update(ci95=(boot["ci_low"], boot["ci_high"]), samples=samples)
    mce = _mce_comparison(a, b, keys, ka, ma, mb, note, samples, seed)
    return out + ([mce] if mce else [])


def _reference_mean_errors(ev: Evaluated, cell, keys: list[str], ka: dict[str, tuple[str, int]]) -> dict[str, float]:
    """The normaliser's mean error per corruption, recovered from CE_c = mean_s E_c,s / R_c."""
    out = {}
    for c, ce in cell.details.get("ce", {}).items():
        errs = [1 - ev.results.cells[k].value for k in keys if ka[k][0] == c]
        if errs and ce > 0:
            out[c] = float(np.mean(errs)) / (ce / 100)
    return out


def _mce_comparison(a, b, keys, ka, ma, mb, note, samples, seed) -> CellComparison | None:
    ca, cb = a.results.cells.get("corruptions/mCE"), b.results.cells.get("corruptions/mCE")
    if ca is None or cb is None:
        return None
    out = CellComparison("corruptions/mCE", "mCE", ca.value, cb.value, ca.n or a.results.cells[keys[0]].n,
                         "unpaired", note=note)
    if ca.details.get("normalizer") != cb.details.get("normalizer"):
        out.note = f"different normalisers ({ca.details.get('normalizer')} vs {cb.details.get('normalizer')})"
    if out.note:
        return out
    ref = {**_reference_mean_errors(b, cb, keys, ka), **_reference_mean_errors(a, ca, keys, ka)}
    bench = [c for c in ca.details.get("corruptions", []) if c in ref]
    per_corruption = []
    for c in ca.details.get("corruptions", []):
        rows = [i for i, k in enumerate(keys) if ka[k][0] == c]
        if not rows:
            out.note = f"corruption {c} of the mCE has no paired cells"
            return out
        # error difference per image averaged over severities, over the reference's mean error
        per_corruption.append((mb[rows] - ma[rows]).mean(0) / ref[c] if c in ref else np.zeros(ma.shape[1]))
    values = 100 * np.mean(per_corruption, axis=0)
    if abs(values.mean() - (ca.value - cb.value)) > 1e-6 * max(1.0, abs(ca.value)):
        out.note = "the stored mCE is not reproduced from the cells (a normaliser over other severities?)"
        return out
    boot = paired_bootstrap(values, samples=samples, seed=seed)
    out.test, out.p_value = "paired bootstrap", boot["p_value"]
    out.detail = {"ci95": (boot["ci_low"], boot["ci_high"]), "samples": samples, "corruptions": len(bench)}
    return out


def paired_cell(a: Evaluated, b: Evaluated, key: str, samples: int = 2000,
                seed: int = 0) -> CellComparison | None:
    """The paired test of one cell (a report's Findings line): McNemar for an accuracy cell, the
    paired bootstrap for mCE / mean corruption accuracy; None when the key has no test."""
    if key in ("corruptions/mean_corruption_accuracy", "corruptions/mCE"):
        found = [c for c in corruption_summaries(a, b, samples, seed) if c.key == key]
    else:
        found = accuracy_cells(a, b, [key])
    if not found:
        return None
    found[0].p_adjusted = found[0].p_value
    return found[0]


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979) of a family of p-values, in the given order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _adjust(cells: list[CellComparison]) -> None:
    for family in {c.family for c in cells}:
        tested = [c for c in cells if c.family == family and c.p_value is not None]
        for c, p in zip(tested, holm([c.p_value for c in tested])):
            c.p_adjusted = p


def compute_record(ev: Evaluated) -> dict[str, Any]:
    """Step cost and total training compute of a run from its run.json (empty when not recorded)."""
    record = ev.run_record()
    cost = dict(record.get("compute") or {})
    if "forward_passes_per_step" not in cost:
        return {}
    steps = record.get("steps")
    cost["method"] = record.get("method")
    cost["steps"] = steps
    if steps and cost["forward_passes_per_step"] > 0:  # 0: a run whose passes the counter did not see
        cost["total_passes"] = steps * (cost["forward_passes_per_step"] + cost["backward_passes_per_step"])
        cost["total_seconds"] = steps * cost["seconds_per_step"]
    return cost


def _compute_note(compute: dict[str, dict[str, Any]], tolerance: float = 0.1) -> str:
    totals = {k: v.get("total_passes") for k, v in compute.items()}
    if len(totals) < 2 or any(t is None for t in totals.values()):
        missing = [k for k, t in totals.items() if t is None]
        return f"compute not recorded for {', '.join(missing)}" if missing else ""
    lo, hi = min(totals.values()), max(totals.values())
    return (f"unequal compute: {hi / lo:.2f}× more forward+backward passes for the costliest"
            if hi > (1 + tolerance) * lo else "")


def untested_cells(a: Evaluated, b: Evaluated, covered: set[str]) -> list[CellComparison]:
    """The headline cells both hold that no per-image test covers (detection mAP, AP50, mPC, rPC,
    mFR, ...): shown side by side, said to be untested, with the way to a paired comparison."""
    out = []
    for key, ca in a.results.cells.items():
        cb = b.results.cells.get(key)
        if key in covered or cb is None or ca.metric != cb.metric or not _is_headline(key, ca.metric):
            continue
        if key.startswith("corruptions/") and key.count("/") >= 2:
            continue  # one (corruption, severity) of a non-accuracy metric: the summaries speak for them
        out.append(CellComparison(key, ca.metric, ca.value, cb.value, ca.n, "unpaired",
                                  note=f"no image-by-image test for {ca.metric}; compare folders of "
                                       "seeds (...__seed=N) for per-seed differences"))
    return out


def compare_pair(a: Evaluated, b: Evaluated, samples: int = 2000, seed: int = 0) -> Comparison:
    """Every paired test of A against B on the cells both hold (see the module doc)."""
    if a.label == b.label:  # two runs of one preset (ablation cells): their folders tell them apart
        a.label, b.label = ((e.run_dir or e.results_dir).name for e in (a, b))
        if a.label == b.label:
            a.label, b.label = f"A: {a.label}", f"B: {b.label}"
    cells = accuracy_cells(a, b) + corruption_summaries(a, b, samples, seed)
    cells += untested_cells(a, b, {c.key for c in cells})
    _adjust(cells)
    compute = {ev.label: compute_record(ev) for ev in (a, b)}
    return Comparison(a.label, b.label, cells=cells, compute=compute, compute_note=_compute_note(compute))


def seed_folders(path: str | Path) -> dict[int, Path]:
    """seed → folder of a run that comes in seeds: the ``seedN`` subfolders of a few-shot cell, or
    for an ablation cell named without its seed (``runs/ablate_x/k=3``) the sibling folders
    ``k=3__seed=N``."""
    path = Path(path)
    if path.is_dir():
        candidates = [(p, p.name) for p in path.iterdir() if p.is_dir()]
    elif path.parent.is_dir():
        prefix = f"{path.name}__"
        candidates = [(p, p.name[len(prefix):]) for p in path.parent.iterdir()
                      if p.is_dir() and p.name.startswith(prefix)]
    else:
        return {}
    out = {}
    for folder, tail in candidates:
        m = SEED_DIR.search(tail)
        if m:
            out[int(m.group(1))] = folder
    return out


def seed_values(folder: Path) -> dict[str, float]:
    """Every cell value of one seed's run: ``eval/`` cells by key; a few-shot cell's ``eval_<name>/``
    cells as ``<name>:<key>``, plus ``HM:<key>`` (harmonic mean of base and new) when both exist."""
    evals = sorted(p for p in folder.glob("eval*") if (p / "results.json").is_file())
    if not evals:
        return {k: c.value for k, c in load_evaluated(folder).results.cells.items()}
    out: dict[str, float] = {}
    for ev in evals:
        prefix = "" if ev.name == "eval" else ev.name[len("eval_"):] + ":"
        out.update({prefix + k: c.value for k, c in EvalResults.load(ev / "results.json").cells.items()})
    for key in [k[len("base:"):] for k in out if k.startswith("base:")]:
        base, new = out.get(f"base:{key}"), out.get(f"new:{key}")
        if new is not None:
            out[f"HM:{key}"] = 0.0 if base + new == 0 else 2 * base * new / (base + new)  # CoCoOp's HM
    return out


def compare_seeds(a: str | Path, b: str | Path) -> list[SeedComparison]:
    """Per-seed paired differences (A − B) of every cell value both hold for each shared seed."""
    sa, sb = seed_folders(a), seed_folders(b)
    shared = sorted(set(sa) & set(sb))
    if not shared:
        raise ValueError(f"{a} and {b} have no seed folder in common (seedN or ...seed=N)")
    per_seed = {s: (seed_values(sa[s]), seed_values(sb[s])) for s in shared}
    keys = sorted(set.intersection(*[set(va) & set(vb) for va, vb in per_seed.values()]))
    return [SeedComparison(k, {s: va[k] - vb[k] for s, (va, vb) in per_seed.items()}) for k in keys]


def compare_runs(paths: list[str | Path], samples: int = 2000, seed: int = 0) -> list[Comparison]:
    """Each run after the first against the first: paired cells, or per-seed differences for
    folders of seed runs (each folder holds ``seedN`` / ``...seed=N`` subfolders)."""
    if len(paths) < 2:
        raise ValueError("compare needs at least two runs: robustune compare RUN_A RUN_B [RUN_C ...]")
    ref, out = paths[0], []
    for other in paths[1:]:
        if seed_folders(ref) and seed_folders(other) and not _has_results(ref):
            cmp = Comparison(Path(ref).name, Path(other).name, seeds=compare_seeds(ref, other))
        else:
            cmp = compare_pair(load_evaluated(ref), load_evaluated(other), samples, seed)
        out.append(cmp)
    return out


def _has_results(path: str | Path) -> bool:
    try:
        find_results(path)
        return True
    except FileNotFoundError:
        return False
