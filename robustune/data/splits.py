"""Build train / val / test datasets and loaders from a :class:`DataConfig` and a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, Subset

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


FOLDER_DATASETS = ("folder", "imagenet")  # class names = sorted folder names of the training split


def class_names(cfg: DataConfig) -> list[str]:
    """Class names of ``cfg``'s training split; for folder datasets from the folder names alone,
    without listing a single image file (ImageNet: 1,000 names instead of 1.28 M files)."""
    if cfg.name in FOLDER_DATASETS and not cfg.options.get("class_names") and cfg.root:
        from robustune.data.folder import folder_class_names

        names = folder_class_names(cfg.root, cfg.train_split)
        if names is not None:
            return names
    return classes_of(create_dataset(cfg.name, cfg.train_split, **dataset_options(cfg)))


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


AUGMENTS = ("timm", "hflip")


def timm_train_transform(model: Any):
    """timm's ImageNet training transform (RandomResizedCrop, flip, colour jitter 0.4: timm's defaults,
    our choice for the fine-tuning presets) sized for ``model``, ending as a [0,1] float tensor."""
    from timm.data import create_transform
    from torchvision.transforms import v2 as T

    size = int(getattr(model, "input_size", (3, 224, 224))[-1])
    aug = create_transform(size, is_training=True, interpolation=getattr(model, "interpolation", "bilinear"),
                           normalize=False)
    steps = list(aug.transforms)[:-1]  # its ToTensor → ToImage + ToDtype: loaders can ship uint8
    return T.Compose([*steps, T.ToImage(), T.ToDtype(torch.float32, scale=True)])


def augment_training_split(train: Dataset, augment: str, model: Any | None) -> None:
    """Training-split augmentation: ``timm`` (image folders) or ``hflip`` (detection, boxes flipped too)."""
    if augment not in AUGMENTS:
        raise ConfigError(f"unknown data.train_augment {augment!r}; valid: {', '.join(AUGMENTS)}")
    detection = getattr(train, "is_detection", False)
    if augment == "hflip" and detection:
        train.hflip = 0.5
    elif augment == "timm" and not detection and hasattr(train, "transform") and getattr(train, "reads_files", False):
        train.transform = timm_train_transform(model)
    else:
        kind = "detection" if detection else type(train).__name__
        raise ConfigError(f"data.train_augment={augment} does not apply to the {kind} dataset "
                          f"{getattr(train, 'name', '') or ''}: use timm for image folders (ImageNet), hflip "
                          "for detection, or leave it unset")


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
    if cfg.train_augment:
        augment_training_split(train, cfg.train_augment, model)
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


def verify_splits(cfg: DataConfig) -> dict[str, dict[str, Any]]:
    """Decode every image file of ``cfg``'s splits once: split → {"n_files", "unreadable": [paths]}.

    The explicit check behind ``robustune verify``; splits of datasets that read no files report
    ``n_files`` 0.
    """
    from robustune.data.folder import decodable

    out: dict[str, dict[str, Any]] = {}
    for split in dict.fromkeys(s for s in (cfg.train_split, cfg.val_split, cfg.test_split) if s):
        ds = create_dataset(cfg.name, split, **dataset_options(cfg))
        base = ds.dataset if isinstance(ds, Subset) else ds
        paths = [p for p, _ in getattr(base, "samples", [])] if getattr(base, "reads_files", False) else []
        out[split] = {"n_files": len(paths), "unreadable": [p for p, ok in zip(paths, decodable(paths)) if not ok]}
    return out


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


class SkipSampler(Sampler):
    """``inner``'s indices without the first ``skip``: where a run resumed inside an epoch starts.

    The inner sampler draws its order exactly as it would uninterrupted (same generator, same
    draws), so the batches after the skip are the uninterrupted run's — and no skipped image is
    loaded.
    """

    def __init__(self, inner: Sampler, skip: int) -> None:
        self.inner, self.skip = inner, skip

    def __iter__(self):
        it = iter(self.inner)
        for _ in range(self.skip):
            if next(it, None) is None:
                return
        yield from it

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)

    def set_epoch(self, epoch: int, skip: int | None = None) -> None:
        """The inner sampler's epoch (DistributedSampler, EpochSampler); ``skip``: a new skip for it
        (a loader reused across epochs skips only in the epoch a run resumed inside)."""
        self.inner.set_epoch(epoch)
        if skip is not None:
            self.skip = skip


def build_loader(ds: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 num_workers: int = 0, pin_memory: bool = False, sampler=None,
                 drop_last: bool = False, skip: int = 0) -> DataLoader:
    """A DataLoader whose shuffle order depends only on ``seed`` (resume-exact).

    ``skip``: leave out the first ``skip`` samples of that order (a resume inside an epoch).
    """
    gen = torch.Generator()
    gen.manual_seed(seed)
    base = ds
    while isinstance(base, Subset):
        base = base.dataset
    if skip:  # the sampler DataLoader(shuffle=True, generator=gen) makes, so the order is the same
        inner = sampler or (RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds))
        sampler = SkipSampler(inner, skip)
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
