"""The unit and direction of every metric the evaluation stores: one table for every report.

A metric is stored either as a fraction in [0, 1] (accuracies, mAP, flip probability: shown ×100
as %) or already in percent (CE-style ratios × 100: mCE, CE, mFR, mT5D, ...). Lower is better for
the errors among them.
"""

from __future__ import annotations

# Metrics stored as fractions in [0, 1] and shown as percentages.
FRACTION_METRICS = frozenset({
    "top1_accuracy", "robust_accuracy", "mean_corruption_accuracy", "flip_probability", "accuracy",
    "clean_accuracy",
    "mAP", "AP50", "AP75", "APs", "APm", "APl", "mPC", "rPC",  # detection (report/detection.py)
})
# Metrics stored already in percent (CE-style ratios × 100): never scaled again.
PERCENT_METRICS = frozenset({"mCE", "CE", "relative_mCE", "relative_CE", "mFR", "FR", "mT5D", "T5D",
                             "unnormalized_mCE", "unnormalized_CE"})
LOWER_IS_BETTER = frozenset({"mCE", "relative_mCE", "CE", "mFR", "mT5D", "flip_probability", "error",
                             "unnormalized_mCE", "unnormalized_CE"})


def is_fraction(metric: str) -> bool:
    """True for a metric stored in [0, 1] (shown ×100)."""
    return metric in FRACTION_METRICS


def in_percent(metric: str, value: float) -> float:
    """``value`` in %: a metric of :data:`PERCENT_METRICS` as stored, any other ×100."""
    return value if metric in PERCENT_METRICS else 100.0 * value


__all__ = ["FRACTION_METRICS", "LOWER_IS_BETTER", "PERCENT_METRICS", "in_percent", "is_fraction"]
