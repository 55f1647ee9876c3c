"""Build train / val / test datasets and loaders from a :class:`DataConfig` and a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from robustune.config import ConfigError, DataConfig
from robustune.data.registry import check_dataset_options, create_dataset
from robustune.data.sampling import class_balanced_subset, few_shot_indices
from robustune.data.transforms import build_transform


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def targets_of(ds: Dataset) -> list[int]:
    """Labels of a dataset or a ``Subset`` of one, without loading images."""
    if isinstance(ds, Subset):
        parent = targets_of(ds.dataset)
        return [parent[i] for i in ds.indices]
    return list(getattr(ds, "targets"))


def classes_of(ds: Dataset) -> list[str]:
    return classes_of(ds.dataset) if isinstance(ds, Subset) else list(getattr(ds, "classes"))


def model_input_options(model: Any | None) -> dict[str, Any]:
    """Keyword arguments that size a dataset for ``model`` (its input size and crop)."""
    if model is None:
        return {}
    size = int(getattr(model, "input_size", (3, 32, 32))[-1])
    return {
        "image_size": size,
        "transform": build_transform(size, getattr(model, "crop_pct", 1.0),
                                     getattr(model, "interpolation", "bilinear")),
    }


def dataset_options(cfg: DataConfig) -> dict[str, Any]:
    """Keyword arguments of ``create_dataset`` for every split of ``cfg`` (root, options, folder keys)."""
    check_dataset_options(cfg.name, cfg.options)
    opts: dict[str, Any] = dict(root=cfg.root, download=cfg.download, **cfg.options)
    folder_keys = {"val_fraction": cfg.val_fraction, "allow_empty_classes": cfg.allow_empty_classes or None}
    for key, value in folder_keys.items():
        if value is not None:
            if cfg.name != "folder":
                raise ConfigError(f"data.{key} applies to the folder dataset only, not {cfg.name!r}; remove it")
            opts[key] = value
    if cfg.val_fraction is not None:
        opts["split_seed"] = cfg.subset_seed
    return opts


def check_same_classes(expected: list[str], got: list[str], expected_name: str, got_name: str) -> None:
    """Raise ``ValueError`` naming the differing classes unless both lists are equal (names, order)."""
    if list(expected) == list(got):
        return
    missing = [c for c in expected if c not in set(got)]
    extra = [c for c in got if c not in set(expected)]
    if missing or extra:
        parts = [f"missing in {got_name}: {', '.join(map(repr, missing[:10]))}" if missing else "",
                 f"only in {got_name}: {', '.join(map(repr, extra[:10]))}" if extra else ""]
        detail = "; ".join(p for p in parts if p)
    else:
        i = next(i for i, (a, b) in enumerate(zip(expected, got)) if a != b)
        detail = f"same names in another order (index {i}: {expected[i]!r} vs {got[i]!r})"
    raise ValueError(f"the class lists of {expected_name} ({len(expected)} classes) and {got_name} "
                     f"({len(got)}) differ: {detail}. Labels would not match; give every split the "
                     "same class folders")


def evaluation_split_layout(cfg: DataConfig) -> DataConfig:
    """The field's ImageNet layout, ``root/train/`` + ``root/val/`` and no ``root/test/``: ``val`` is
    the evaluation split (the config's default ``test_split: test`` is replaced, once, with a log
    line). When ``val`` is also the validation split its accuracy is only reported: the engine
    never selects a checkpoint (the last epoch is the model), so nothing is tuned on it."""
    import dataclasses
    import logging
    from pathlib import Path

    if cfg.name not in ("folder", "imagenet") or not cfg.root or cfg.test_split != "test":
        return cfg
    base = Path(cfg.root)
    if (base / "test").is_dir() or not (base / cfg.train_split).is_dir() or not (base / "val").is_dir():
        return cfg
    logging.getLogger(__name__).info(
        "%s has %s/ and val/ but no test/: 'val' is the evaluation split%s", base, cfg.train_split,
        " and also the validation split; no checkpoint is selected on it (the last epoch is used)"
        if cfg.val_split == "val" else "")
    return dataclasses.replace(cfg, test_split="val")


def load_splits(cfg: DataConfig, model: Any | None = None) -> DataSplits:
    """Datasets for ``cfg`` sized for ``model``, with ``train_subset`` / ``shots`` applied to train.

    Every split must have the class list of the training split (names and order).
    """
    opts = dict(**dataset_options(cfg), **model_input_options(model))
    train = create_dataset(cfg.name, cfg.train_split, **opts)
    classes = classes_of(train)
    if getattr(train, "is_detection", False) and (cfg.shots or cfg.train_subset):
        raise ValueError(f"data.shots / data.train_subset select images per class and do not apply to the "
                         f"detection dataset {cfg.name!r}; use a smaller annotation file "
                         "(or data.options.n_images for digits_det)")
    if cfg.shots:
        train = Subset(train, few_shot_indices(targets_of(train), cfg.shots, cfg.subset_seed))
    elif cfg.train_subset:
        train = Subset(train, class_balanced_subset(targets_of(train), cfg.train_subset, cfg.subset_seed))
    val = create_dataset(cfg.name, cfg.val_split, **opts) if cfg.val_split else None
    test = create_dataset(cfg.name, cfg.test_split, **opts) if cfg.test_split else None
    for name, ds in ((cfg.val_split, val), (cfg.test_split, test)):
        if ds is not None:
            check_same_classes(classes, classes_of(ds), f"the {cfg.train_split!r} split",
                               f"the {name!r} split")
    return DataSplits(train=train, val=val, test=test, classes=classes)


class IndexedDataset(Dataset):
    """``(image, label, index)`` items of a dataset: methods that keep per-sample state (ER-APT's
    population warm start) key it by the index into the training set."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index][:2]
        return image, label, index


def build_loader(ds: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 num_workers: int = 0, pin_memory: bool = False, sampler=None,
                 drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffle order depends only on ``seed`` (resume-exact)."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    base = ds
    while isinstance(base, Subset):
        base = base.dataset
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, num_workers=num_workers, pin_memory=pin_memory,
                      drop_last=drop_last, persistent_workers=False,
                      collate_fn=getattr(base, "collate_fn", None))  # detection: lists of images + targets


def train_class_info(cfg: DataConfig) -> dict[str, object]:
    """Class names, prompt template and source dataset of a run's training split.

    For CLIP model builders: a few-shot view (``data.name: fewshot``, :mod:`robustune.data.fewshot`)
    exposes the class names of its subset (base or new) and the CoOp template of its source
    dataset, so a text head built from this matches the labels of every split of the run.
    ``template`` is None when the dataset carries none; ``source`` is ``data.options.source`` for
    a few-shot view, else ``data.name``.
    """
    ds = create_dataset(cfg.name, cfg.train_split, **dataset_options(cfg))
    source = cfg.options.get("source") if cfg.name == "fewshot" else cfg.name
    return {"classes": classes_of(ds), "template": getattr(ds, "template", None), "source": source}
