"""The dataset registry: ``create_dataset(name, split, root=..., transform=..., **options)``.

Every dataset returned has ``classes`` (names, index order) and ``targets`` (one int per image),
and yields ``(image, label)`` with ``image`` a float tensor in [0,1], CHW.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from robustune.registry import Registry

DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")
register_dataset = DATASETS.register


def create_dataset(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """Build dataset ``name`` for ``split``; unknown names list the valid ones."""
    return DATASETS.get(name)(split=split, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.list(pattern)
