"""CIFAR-10 / CIFAR-100 in torchvision's on-disk format from a local folder.

Downloading happens only with ``download=True`` (``data.download: true``) and a network.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from robustune.data.registry import register_dataset


def _cifar(cls_name: str, split: str, root: str | None, transform, download: bool) -> Dataset:
    import torchvision

    if root is None:
        raise ValueError(f"{cls_name.lower()} needs data.root (folder with the extracted archive)")
    if split not in ("train", "test", "val"):
        raise ValueError(f"unknown CIFAR split {split!r}; valid: train, test (val = test)")
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=str(Path(root)), train=split == "train", transform=transform, download=download)
    except RuntimeError as exc:
        raise FileNotFoundError(
            f"{cls_name} not found under {root!r}. Put the extracted python-format archive there "
            f"(e.g. {root}/cifar-10-batches-py) or set data.download=true on a machine with a network."
        ) from exc
    if transform is None:
        from torchvision.transforms import v2 as T
        import torch

        ds.transform = T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True)])
    return ds


@register_dataset("cifar10")
def cifar10(split: str = "train", root: str | None = None, transform=None, download: bool = False,
            **_: object) -> Dataset:
    return _cifar("CIFAR10", split, root, transform, download)


@register_dataset("cifar100")
def cifar100(split: str = "train", root: str | None = None, transform=None, download: bool = False,
             **_: object) -> Dataset:
    return _cifar("CIFAR100", split, root, transform, download)
