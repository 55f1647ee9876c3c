"""Few-shot views of any registered dataset: K-shot sampling (cached), base / new class subsets.

The protocol of CoOp / FAP / ER-APT (spec §6):

- K-shot: K training images per class from the train split, and val = min(K, 4) images per class
  from the val split (from the train images not drawn for training when a dataset has no val
  split, e.g. ImageNet), drawn with seed ``seed`` and cached as a small JSON of indices per
  (dataset, K, seed) under ``robustune.utils.cache_dir()/fewshot/``.
- Base-to-new: classes sorted by label, the first ⌈n/2⌉ are *base*, the rest *new*; each subset's
  labels are remapped to 0..n_sub-1 and ``classes`` keep the subset's names, so a CLIP head built
  from ``dataset.classes`` matches the labels.

Registered as the dataset ``fewshot``: ``create_dataset("fewshot", split, source="caltech101",
subset="base", shots=16, seed=1, root=...)``; in a config, ``data: {name: fewshot, options:
{source: digits, subset: base, shots: 16, seed: 1}}``. Other keyword arguments go to the source.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from robustune.data.coop import MissingSplitError
from robustune.data.registry import create_dataset, register_dataset
from robustune.data.sampling import few_shot_indices
from robustune.registry import unknown_choice_message
from robustune.files import read_json, write_json
from robustune.utils import cache_dir

log = logging.getLogger(__name__)

SUBSETS = ("all", "base", "new")
VAL_SHOTS_MAX = 4
DEFAULT_TEMPLATE = "a photo of a {}."
# Templates of registered datasets that do not carry a ``template`` attribute themselves.
TEMPLATES = {"digits": "a photo of the digit {}."}  # as robustune.clip.templates


def base_new_labels(num_classes: int) -> tuple[list[int], list[int]]:
    """(base labels, new labels): the first ⌈n/2⌉ labels are base, the rest new (CoCoOp, FAP)."""
    if num_classes < 2:
        raise ValueError(f"base-to-new needs at least 2 classes, got {num_classes}")
    cut = math.ceil(num_classes / 2)
    return list(range(cut)), list(range(cut, num_classes))


def subset_labels(num_classes: int, subset: str) -> list[int]:
    """Labels (of the full dataset) kept by ``subset`` in all | base | new."""
    if subset not in SUBSETS:
        raise ValueError(unknown_choice_message("class subset", subset, SUBSETS))
    if subset == "all":
        return list(range(num_classes))
    base, new = base_new_labels(num_classes)
    return base if subset == "base" else new


class ClassSubsetView(Dataset):
    """Images ``indices`` of ``parent`` with labels ``keep[i] → i`` and the kept class names."""

    def __init__(self, parent: Dataset, indices: list[int], keep: list[int], template: str) -> None:
        parent_targets = list(getattr(parent, "targets"))
        parent_classes = list(getattr(parent, "classes"))
        self.parent = parent
        self.label_map = {old: new for new, old in enumerate(keep)}
        self.indices = [i for i in indices if parent_targets[i] in self.label_map]
        self.targets = [self.label_map[parent_targets[i]] for i in self.indices]
        self.classes = [parent_classes[k] for k in keep]
        self.template = template

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.parent[self.indices[index]]
        return image, self.label_map[int(label)]


SAMPLER_VERSION = 2  # part of the cache key: a cache of another sampler is drawn again


def _fingerprint(targets: list[int]) -> str:
    text = f"v{SAMPLER_VERSION}:" + ",".join(map(str, targets))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def kshot_cache_path(source: str, root: str | None, shots: int, seed: int) -> Path:
    where = hashlib.sha1(str(Path(root).expanduser().resolve() if root else "").encode()).hexdigest()[:8]
    return cache_dir() / "fewshot" / f"{source}-{where}" / f"shot_{shots}-seed_{seed}.json"


def kshot_indices(train_targets: list[int], val_targets: list[int] | None, shots: int, seed: int,
                  cache_path: Path | None = None) -> dict[str, Any]:
    """K-shot train indices and min(K, 4)-shot val indices, seeded, cached as JSON.

    ``val_targets`` None means the dataset has no val split: val is then drawn from the train
    images not chosen for training (``val_from`` = "train"), so train and val never overlap.
    """
    if shots <= 0:
        raise ValueError(f"shots must be positive, got {shots}")
    fingerprint = {"train": _fingerprint(train_targets),
                   "val": _fingerprint(val_targets) if val_targets is not None else None}
    if cache_path is not None and cache_path.is_file():
        cached = read_json(cache_path)
        if cached.get("fingerprint") == fingerprint:
            return cached
        log.warning("K-shot cache %s was made for other data; sampling again", cache_path)
    # The same draw as ``data.shots`` with ``data.subset_seed`` on the plain dataset.
    train = few_shot_indices(train_targets, shots, seed)
    val_shots = min(shots, VAL_SHOTS_MAX)
    if val_targets is None:
        chosen = set(train)
        rest = [i for i in range(len(train_targets)) if i not in chosen]
        val = [rest[j] for j in few_shot_indices([train_targets[i] for i in rest], val_shots, seed)]
    else:
        val = few_shot_indices(val_targets, val_shots, seed)
    record = {"shots": shots, "val_shots": val_shots, "seed": seed, "train": train, "val": val,
              "val_from": "train" if val_targets is None else "val", "fingerprint": fingerprint}
    if cache_path is not None:
        write_json(cache_path, record)
        log.info("cached %d-shot indices (seed %d) in %s", shots, seed, cache_path)
    return record


def _cached_train_indices(path: Path | None, train_targets: list[int]) -> list[int] | None:
    """Train indices of a cached draw made for these train labels (skips loading val), or None."""
    if path is None or not path.is_file():
        return None
    cached = read_json(path)
    same_data = cached.get("fingerprint", {}).get("train") == _fingerprint(train_targets)
    return cached["train"] if same_data else None


def _optional_split(source: str, split: str, kwargs: dict[str, Any]) -> Dataset | None:
    """The ``split`` dataset of ``source``, or None when the source has no such split."""
    try:
        ds = create_dataset(source, split, **kwargs)
    except MissingSplitError:
        return None
    return ds if len(ds) else None


@register_dataset("fewshot")
def fewshot(split: str = "train", source: str | None = None, subset: str = "all",
            shots: int | None = None, seed: int = 0, cache: bool = True, **kwargs: Any) -> Dataset:
    """A few-shot, class-subset view of dataset ``source`` (see the module docstring).

    Args:
        split: train | val | test; ``shots`` applies to train (K per class) and val (min(K, 4)).
        source: a registered dataset name (``digits``, ``caltech101``, ``fewshot_imagenet`` ...).
        subset: all | base | new classes.
        shots: K, or None for every image of the split.
        seed: the sampling seed (used as given; 0 is a valid seed).
        cache: cache the sampled indices under ``cache_dir()/fewshot``.
        **kwargs: passed to the source dataset (root, transform, image_size, ...).
    """
    if not source or source == "fewshot":
        raise ValueError("the fewshot dataset needs data.options.source naming another dataset, "
                         "e.g. source: digits")
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown few-shot split {split!r}; valid: train, val, test")
    if split == "test":
        parent = create_dataset(source, split, **kwargs)
        indices = list(range(len(parent)))
    elif split == "val" and shots is None:
        parent = _optional_split(source, split, kwargs)
        if parent is None:
            raise MissingSplitError(f"{source} has no val split; "
                                    "set data.options.shots to draw val from train")
        indices = list(range(len(parent)))
    else:
        train_set = create_dataset(source, "train", **kwargs)
        if shots is None:
            parent, indices = train_set, list(range(len(train_set)))
        else:
            path = kshot_cache_path(source, kwargs.get("root"), shots, seed) if cache else None
            train_targets = list(getattr(train_set, "targets"))
            indices = _cached_train_indices(path, train_targets) if split == "train" else None
            parent = train_set
            if indices is None:  # the val split is needed (its labels are part of the cache key)
                val_set = _optional_split(source, "val", kwargs)
                val_targets = list(getattr(val_set, "targets")) if val_set is not None else None
                indices = kshot_indices(train_targets, val_targets, shots, seed, path)[split]
                parent = val_set if split == "val" and val_set is not None else train_set
    template = getattr(parent, "template", None) or TEMPLATES.get(source, DEFAULT_TEMPLATE)
    classes = list(getattr(parent, "classes"))
    if classes and all(re.fullmatch(r"n\d{8}", c) for c in classes):
        log.warning("%s's class names are WordNet ids, useless in CLIP prompts; for ImageNet use "
                    "source: fewshot_imagenet (reads classnames.txt)", source)
    keep = subset_labels(len(classes), subset)
    return ClassSubsetView(parent, indices, keep, template)


def _fewshot_option_names(options: dict[str, Any]) -> list[str] | None:
    from robustune.data.registry import dataset_option_names

    own = ["source", "subset", "shots", "seed", "cache"]
    source = options.get("source")
    if not source or source == "fewshot":
        return own
    inner = dataset_option_names(str(source), {})
    return None if inner is None else own + inner


fewshot.option_names = _fewshot_option_names
