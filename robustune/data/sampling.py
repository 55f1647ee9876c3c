"""Class-balanced subsets and K-shot sampling, seeded and deterministic."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

log = logging.getLogger(__name__)


def _by_class(targets: list[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, t in enumerate(targets):
        groups[int(t)].append(i)
    return groups


def class_balanced_subset(targets: list[int], n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` images spread as evenly as possible over classes (GFN Sec. 5.3)."""
    if n <= 0:
        raise ValueError(f"train_subset must be positive, got {n}")
    if n >= len(targets):
        return list(range(len(targets)))
    rng = np.random.default_rng(seed)
    groups = {c: rng.permutation(ix).tolist() for c, ix in sorted(_by_class(targets).items())}
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        added = False
        for c in rng.permutation(list(groups)).tolist():
            if depth < len(groups[c]) and len(chosen) < n:
                chosen.append(groups[c][depth])
                added = True
        if not added:
            break
        depth += 1
    return sorted(chosen)


def few_shot_indices(targets: list[int], shots: int, seed: int = 0) -> list[int]:
    """K images per class (all of a class if it has fewer, with a warning), seeded."""
    if shots <= 0:
        raise ValueError(f"shots must be positive, got {shots}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    short = []
    for c, ix in sorted(_by_class(targets).items()):
        if len(ix) < shots:
            short.append(c)
        chosen.extend(rng.permutation(ix)[:shots].tolist())
    if short:
        log.warning("%d classes have fewer than %d images; all of them are used", len(short), shots)
    return sorted(chosen)
