"""Sanity checks of adversarial evaluations (RobustBench style; Croce et al. 2021, Sec. 4 and
Carlini et al. 2019, "On evaluating adversarial robustness"), registered on ``CHECKS``.

Each check returns ``{"check", "cell", "passed", "detail"}`` rows; :func:`evaluate` stores them in
``results.json`` and logs the failed ones as warnings.

* ε = 0 reproduces clean accuracy (the attack pipeline changes nothing without budget);
* robust ≤ clean for every adversarial cell;
* PGD-k accuracy does not rise with k beyond noise (same loss, norm, ε);
* gradient masking: the black-box Square attack beats a white-box attack beyond noise, or breaks
  more than a few points the white-box AutoAttack components could not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from robustune.eval.results import Cell, EvalResults
from robustune.eval.suites import CHECKS

WHITE_BOX = ("apgd-ce", "apgd-t", "apgd-dlr")


def noise_margin(p: float, n: int, z: float = 1.96) -> float:
    """Largest difference of two accuracies on the same ``n`` points still read as noise.

    ``z`` standard errors of the difference of two independent proportions at ``p``, plus one point.
    """
    n = max(n, 1)
    return z * math.sqrt(2 * p * (1 - p) / n) + 1 / n


def _threat(cell: Cell) -> dict[str, Any]:
    return cell.details.get("threat_model") or {}


def _adversarial(results: EvalResults) -> list[Cell]:
    return [c for c in results.cells.values() if c.suite == "adversarial"]


def _row(check: str, cell: str, passed: bool, detail: str, **extra: Any) -> dict[str, Any]:
    return {"check": check, "cell": cell, "passed": bool(passed), "detail": detail, **extra}


@CHECKS.register("adversarial_eps0_is_clean")
def eps0_is_clean(results: EvalResults) -> list[dict[str, Any]]:
    out = []
    clean_cell = results.cells.get("clean")
    for cell in _adversarial(results):
        if _threat(cell).get("eps") != 0:
            continue
        own = cell.details.get("clean_accuracy")
        ref = clean_cell.value if clean_cell is not None and clean_cell.n == cell.n else own
        ok = ref is not None and abs(cell.value - ref) < 0.5 / max(cell.n or 1, 1)  # same count
        out.append(_row("eps=0 reproduces clean accuracy", cell.key, ok,
                        f"eps=0 accuracy {cell.value:.4f} vs clean {ref}"))
    return out


@CHECKS.register("adversarial_robust_le_clean")
def robust_le_own_clean(results: EvalResults) -> list[dict[str, Any]]:
    out = []
    for cell in _adversarial(results):
        clean = cell.details.get("clean_accuracy")
        if clean is not None:
            out.append(_row("robust <= clean (same points)", cell.key, cell.value <= clean + 1e-9,
                            f"robust {cell.value:.4f} vs clean {clean:.4f}"))
    return out


def _pgd_cells(results: EvalResults) -> dict[tuple, list[tuple[int, Cell]]]:
    groups: dict[tuple, list[tuple[int, Cell]]] = defaultdict(list)
    for cell in results.cells.values():
        t = _threat(cell)
        is_pgd = (cell.suite == "adversarial" and t.get("family") == "pgd") or cell.suite == "pgd"
        if is_pgd and t.get("steps") and cell.metric == "robust_accuracy":
            group = (t.get("loss", "ce"), t.get("norm", "Linf"), round(float(t.get("eps", 0)), 9),
                     t.get("restarts", 1))
            groups[group].append((int(t["steps"]), cell))
    return groups


@CHECKS.register("adversarial_pgd_steps_monotone")
def pgd_steps_monotone(results: EvalResults) -> list[dict[str, Any]]:
    """More PGD steps must not raise robust accuracy beyond noise (else the step size or the
    gradients are suspect)."""
    out = []
    for (loss, norm, eps, _), cells in _pgd_cells(results).items():
        cells.sort(key=lambda kc: kc[0])
        for i, (k2, c2) in enumerate(cells):
            fewer = [(k, c) for k, c in cells[:i] if k < k2]
            if not fewer:
                continue
            k1, c1 = min(fewer, key=lambda kc: kc[1].value)  # the strongest attack with fewer steps
            margin = noise_margin(c1.value, c1.n or 1)
            out.append(_row("PGD-k accuracy does not rise with k", c2.key,
                            c2.value <= c1.value + margin,
                            f"{loss}/{norm}: PGD-{k1} {c1.value:.4f} -> PGD-{k2} {c2.value:.4f} "
                            f"(noise {margin:.4f})"))
    return out


def _square_vs_white_box(cells: list[Cell]) -> list[dict[str, Any]]:
    out = []
    by_eps: dict[tuple, dict[str, Cell]] = defaultdict(dict)
    for cell in cells:
        t = _threat(cell)
        by_eps[(t.get("norm"), round(float(t.get("eps", 0)), 9))][t.get("attack")] = cell
    for (norm, eps), named in by_eps.items():
        square = named.get("square")
        white = [named[n] for n in WHITE_BOX if n in named]
        if square is None or not white or eps == 0:
            continue
        best = min(white, key=lambda c: c.value)
        margin = noise_margin(best.value, best.n or 1)
        out.append(_row("gradient masking (Square vs white-box)", square.key,
                        square.value >= best.value - margin,
                        f"black-box Square {square.value:.4f} vs white-box {_threat(best).get('attack')} "
                        f"{best.value:.4f} (noise {margin:.4f})", kind="warning"))
    return out


def _square_inside_autoattack(cells: list[Cell]) -> list[dict[str, Any]]:
    out = []
    for cell in cells:
        comps = cell.details.get("components") or []
        names = [c["name"] for c in comps]
        if "square" not in names or names.index("square") == 0 or not cell.n:
            continue
        i = names.index("square")
        broken = round((comps[i - 1]["robust_accuracy"] - comps[i]["robust_accuracy"]) * cell.n)
        allowed = max(1, math.floor(0.005 * cell.n))
        out.append(_row("gradient masking (Square after white-box AutoAttack)", cell.key,
                        broken <= allowed,
                        f"Square fooled {broken} point(s) the gradient attacks could not "
                        f"(allowed {allowed})", kind="warning"))
    return out


@CHECKS.register("adversarial_gradient_masking")
def gradient_masking(results: EvalResults) -> list[dict[str, Any]]:
    cells = _adversarial(results)
    return _square_vs_white_box(cells) + _square_inside_autoattack(cells)
