"""Small statistics for reported accuracies."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))



def _log_binom_tail(m: int, k: int) -> float:
    """log P(X ≤ k) for X ~ Binomial(m, 1/2), summed in log space (exact to float precision)."""
    terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
             for i in range(k + 1)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def mcnemar_exact(a_correct, b_correct) -> dict[str, float | int]:
    """Exact McNemar test of two models' accuracies on the same images (McNemar 1947).

    Only discordant images carry information: ``only_a`` = right for A only, ``only_b`` = right
    for B only. Under H0 (equal accuracy) ``only_a ~ Binomial(only_a + only_b, 1/2)``; the
    two-sided p-value is ``min(1, 2 · P(X ≤ min(only_a, only_b)))``, which is scipy's
    ``binomtest(only_a, only_a + only_b).pvalue`` for p = 1/2 (the tests check it).
    """
    import numpy as np

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same images: {a.size} vs {b.size}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    m = only_a + only_b
    p = min(1.0, 2 * math.exp(_log_binom_tail(m, min(only_a, only_b)))) if m else 1.0
    return {"n": int(a.size), "only_a": only_a, "only_b": only_b, "p_value": p,
            "difference": (only_a - only_b) / max(int(a.size), 1)}


def paired_bootstrap(values, samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap of the mean of per-image paired differences (A − B), images resampled.

    Every statistic ``compare`` bootstraps is a mean over images of a per-image difference (mean
    corruption accuracy: the image's accuracy difference averaged over cells; mCE: its error
    difference averaged over severities, divided by the reference's mean error per corruption,
    averaged over corruptions), so resampling images resamples ``values`` (Efron & Tibshirani
    1993, ch. 13). Returns the estimate, the interval and the two-sided bootstrap p-value
    ``min(1, 2 · min(P*(d ≤ 0), P*(d ≥ 0)))`` (our choice; the interval is the result).
    """
    import numpy as np

    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.concatenate([v[rng.integers(0, v.size, (min(100, samples - i), v.size))].mean(1)
                            for i in range(0, samples, 100)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return {"difference": float(v.mean()), "ci_low": float(lo), "ci_high": float(hi), "p_value": p,
            "samples": samples, "n": int(v.size)}
