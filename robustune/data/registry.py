"""The dataset registry: ``create_dataset(name, split, root=..., transform=..., **options)``.

Every dataset returned has ``classes`` (names, index order) and ``targets`` (one int per image),
and yields ``(image, label)`` with ``image`` a float tensor in [0,1], CHW.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch.utils.data import Dataset

from robustune.registry import Registry, unknown_choice_message

DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")
register_dataset = DATASETS.register


def create_dataset(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """Build dataset ``name`` for ``split``; unknown names list the valid ones."""
    return DATASETS.get(name)(split=split, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    return DATASETS.list(pattern)


# Set by the data config or from the model, never through data.options.
OWN_KEYS = {"split": "the split keys", "root": "data.root", "download": "data.download",
            "transform": "the model's data config", "image_size": "the model's input size",
            "val_fraction": "data.val_fraction", "split_seed": "data.subset_seed",
            "allow_empty_classes": "data.allow_empty_classes"}


def dataset_option_names(name: str, options: dict[str, Any] | None = None) -> list[str] | None:
    """The ``data.options`` keys dataset ``name`` accepts, or None when it cannot be told.

    A factory's keyword parameters are its options; ``**_`` swallows nothing the user may rely
    on, while a factory that forwards ``**kwargs`` elsewhere declares ``option_names(options)``
    (the few-shot view adds its source's options) or a ``__signature__``.
    """
    fn = DATASETS.get(name)
    hook = getattr(fn, "option_names", None)
    if hook is not None:
        return hook(options or {})
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD and p.name != "_" for p in params):
        return None
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in OWN_KEYS]


def check_dataset_options(name: str, options: dict[str, Any]) -> None:
    """Unknown ``data.options`` keys name the closest valid one (a typo never silently falls back)."""
    from robustune.config import ConfigError

    for key in options:
        if key in OWN_KEYS:
            raise ConfigError(f"data.options.{key} is set by {OWN_KEYS[key]}, not data.options: "
                              "remove it from data.options")
    valid = dataset_option_names(name, options)
    if valid is None:
        return
    for key in options:
        if key not in valid:
            msg = unknown_choice_message(f"option of dataset {name!r}", f"data.options.{key}",
                                         [f"data.options.{v}" for v in valid] or ["(none)"])
            raise ConfigError(msg.replace("Valid choices", "Valid options"))
