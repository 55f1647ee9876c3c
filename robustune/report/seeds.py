"""Numbers over seeds as the tables show them: ``mean ± std``, and Markdown tables of such rows.

The std is the sample standard deviation over seeds (``statistics.stdev``) unless a caller
computed its own (the few-shot tables keep the population std they have always recorded).
"""

from __future__ import annotations

import statistics
from typing import Sequence


def seed_mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) over seeds; one seed has no spread (std 0)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def mean_std_text(mean: float, std: float, n: int, digits: int = 1) -> str:
    """``mean ± std`` over ``n`` seeds; a single seed shows its value alone (no "± 0.0")."""
    text = f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if n > 1 else text


def seeds_text(values: Sequence[float], digits: int = 1, empty: str = "–") -> str:
    """``mean ± std`` of per-seed ``values`` (``empty`` when there are none)."""
    if not values:
        return empty
    mean, std = seed_mean_std(values)
    return mean_std_text(mean, std, len(values), digits)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["markdown_table", "mean_std_text", "seed_mean_std", "seeds_text"]
