"""Loaders that keep an accelerator busy: worker processes, pinned memory, uint8 transport, GPU decode.

Images leave the workers as uint8 (a quarter of float32's bytes through the worker queues, the
pinned buffers and the host-to-device copy) and become float [0,1] on the device, with the same
``to_dtype(scale=True)`` the dataset's transform would have applied on the CPU: bit-identical
inputs. Normalisation stays inside the model (:class:`robustune.models.ImageNormalizer`).

Decode backends (``LoaderOptions.decode``): ``pil`` (default; PIL in the workers) and
``torchvision``: the workers only read the encoded bytes and the batch is decoded in one
``torchvision.io.decode_jpeg`` call on the device (nvJPEG on CUDA), then resized / cropped there.
Both give the same labels in the same per-image order; decoders may differ by a grey level on
some pixels (libjpeg vs nvJPEG). Non-JPEG files fall back to a CPU decode in the same batch.

Defaults are ours (the papers say nothing about loading): ``num_workers`` = the cores this process
may use divided among the ranks torchrun started on this node (``LOCAL_WORLD_SIZE``), capped at
:data:`MAX_WORKERS`, for datasets that decode files; 0 for datasets held in memory (digits,
generated arrays), where worker processes only add start-up and copy costs.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

MAX_WORKERS = 12  # ours: past ~12 PIL workers one GPU's forward is rarely the bottleneck
DECODERS = ("pil", "torchvision")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_world_size() -> int:
    """Processes torchrun started on this node (``LOCAL_WORLD_SIZE``; 1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def default_num_workers() -> int:
    """Decode workers per process: this node's cores shared by its ranks, at least 1, at most 12.

    Eight ranks on a 96-core node get 12 workers each rather than 8 × 12 processes on 96 cores;
    two ranks on 2 cores get one each rather than four workers fighting the two ranks.
    """
    return max(1, min(available_cores() // local_world_size(), MAX_WORKERS))


@dataclass
class LoaderOptions:
    """How batches are loaded; none of these changes a number (labels, order and pixels are the same).

    ``num_workers`` None: :func:`default_num_workers` for file datasets, 0 for in-memory ones;
    ``pin_memory`` None: on when the target device is CUDA; ``decode``: ``pil`` | ``torchvision``.
    """

    num_workers: int | None = None
    pin_memory: bool | None = None
    prefetch_factor: int = 4
    persistent_workers: bool = True
    decode: str = "pil"
    uint8: bool = True

    def __post_init__(self) -> None:
        if self.decode not in DECODERS:
            raise ValueError(f"unknown decode backend {self.decode!r}; valid: {', '.join(DECODERS)}")

    @classmethod
    def from_config(cls, data: Any) -> "LoaderOptions":
        """From a :class:`robustune.config.DataConfig` (``num_workers``, ``pin_memory``, ``decode``)."""
        return cls(num_workers=data.num_workers, pin_memory=data.pin_memory, decode=data.decode)


def base_dataset(ds: Dataset) -> Dataset:
    """The dataset under any ``Subset`` / wrapper chain (objects with a ``.dataset``)."""
    while hasattr(ds, "dataset") and isinstance(getattr(ds, "dataset"), Dataset):
        ds = ds.dataset
    return ds


def reads_files(ds: Dataset) -> bool:
    """True when items are decoded from files (worth worker processes)."""
    return bool(getattr(base_dataset(ds), "reads_files", False))


def _rebuild(ds: Dataset, leaf: Callable[[Dataset], Dataset | None]) -> Dataset | None:
    """``ds`` with its base dataset replaced by ``leaf(base)`` (wrappers shallow-copied); None if unsupported."""
    inner = getattr(ds, "dataset", None)
    if isinstance(inner, Dataset):
        new_inner = _rebuild(inner, leaf)
        if new_inner is None:
            return None
        if isinstance(ds, Subset):
            return Subset(new_inner, ds.indices)
        out = copy.copy(ds)
        out.dataset = new_inner
        return out
    return leaf(ds)


def uint8_view(ds: Dataset) -> Dataset:
    """``ds`` yielding uint8 images where its base dataset supports it, else ``ds`` unchanged."""
    view = _rebuild(ds, lambda b: b.uint8_view() if hasattr(b, "uint8_view") else None)
    return ds if view is None else view


def encoded_view(ds: Dataset) -> Dataset | None:
    """``ds`` yielding (encoded file bytes, label) for device decoding; None if it has no files."""
    return _rebuild(ds, lambda b: b.encoded_view() if hasattr(b, "encoded_view") else None)


def resolve_workers(ds: Dataset, opts: LoaderOptions) -> int:
    if opts.num_workers is not None:
        return opts.num_workers
    return default_num_workers() if reads_files(ds) else 0


def _loader_kwargs(workers: int, opts: LoaderOptions, device: torch.device | None) -> dict[str, Any]:
    pin = opts.pin_memory if opts.pin_memory is not None else (device is not None and device.type == "cuda")
    extra: dict[str, Any] = {"num_workers": workers, "pin_memory": bool(pin)}
    if workers > 0:
        extra.update(prefetch_factor=opts.prefetch_factor, persistent_workers=opts.persistent_workers)
    return extra


def make_loader(ds: Dataset, batch_size: int, opts: LoaderOptions | None = None, *,
                device: torch.device | str | None = None, sampler: Sampler | None = None,
                drop_last: bool = False, collate_fn: Callable | None = None) -> DataLoader:
    """A DataLoader over ``ds`` with workers / pinning / prefetch from ``opts`` (uint8 transport).

    Order is ``sampler``'s (default: dataset order). Detection datasets bring their own collate.
    """
    opts = opts or LoaderOptions()
    device = torch.device(device) if device is not None else None
    workers = resolve_workers(ds, opts)
    source = uint8_view(ds) if opts.uint8 else ds
    collate = collate_fn or getattr(base_dataset(ds), "collate_fn", None)
    return DataLoader(source, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=drop_last,
                      collate_fn=collate, **_loader_kwargs(workers, opts, device))


def to_float_images(x: Any, device: torch.device | str) -> Any:
    """A batch on ``device`` as float [0,1]: uint8 is converted there exactly as ``ToDtype(scale=True)``."""
    if not torch.is_tensor(x):
        return x
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        from torchvision.transforms.v2.functional import to_dtype

        x = to_dtype(x, torch.float32, scale=True)
    return x


def _bytes_collate(batch: list[tuple]) -> tuple:
    """Encoded images packed into one uint8 tensor + their lengths (one shared buffer per batch,
    not one file descriptor per image); labels (and indices) are stacked."""
    from torch.utils.data import default_collate

    rest = default_collate([item[1:] for item in batch])
    lengths = torch.as_tensor([len(item[0]) for item in batch])
    return ((torch.cat([item[0] for item in batch]), lengths), *rest)


def _unpack(packed: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    data, lengths = packed
    return list(torch.split(data, lengths.tolist()))


def decode_batch(encoded: list[torch.Tensor], device: torch.device, transform: Callable | None) -> torch.Tensor:
    """Decode encoded images as one batch on ``device`` (JPEG: ``decode_jpeg``), transform, stack as uint8."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    is_jpeg = [bool(len(b) > 2 and b[0] == 0xFF and b[1] == 0xD8) for b in encoded]
    jpegs = [b for b, j in zip(encoded, is_jpeg) if j]
    decoded = iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
    images = []
    for b, j in zip(encoded, is_jpeg):
        img = next(decoded) if j else decode_image(b, mode=ImageReadMode.RGB).to(device)
        images.append(transform(img) if transform is not None else img)
    return torch.stack(images)


class DeviceBatches:
    """Iterate ``(float images on device, labels, *rest)`` batches of ``ds`` in ``sampler`` order.

    The loader is built once and reused by every iteration (persistent workers); with
    ``decode="torchvision"`` and a file dataset, images are decoded on ``device`` in batches.
    """

    def __init__(self, ds: Dataset, batch_size: int, device: torch.device | str,
                 opts: LoaderOptions | None = None, *, sampler: Sampler | None = None,
                 drop_last: bool = False) -> None:
        self.opts = opts or LoaderOptions()
        self.device = torch.device(device)
        self.transform = None
        encoded = encoded_view(ds) if self.opts.decode == "torchvision" else None
        if encoded is not None:
            self.transform = base_dataset(encoded).device_transform
            self.loader = DataLoader(encoded, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                                     collate_fn=_bytes_collate,
                                     **_loader_kwargs(resolve_workers(ds, self.opts), self.opts, self.device))
        else:
            self.loader = make_loader(ds, batch_size, self.opts, device=self.device, sampler=sampler,
                                      drop_last=drop_last)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple]:
        for batch in self.loader:
            x, rest = batch[0], tuple(batch[1:])
            if self.transform is not None:
                x = decode_batch(_unpack(x), self.device, self.transform)
            yield (to_float_images(x, self.device), *rest)


def device_batches(ds: Dataset, batch_size: int, device: torch.device | str,
                   opts: LoaderOptions | None = None) -> DeviceBatches:
    """Evaluation batches of ``ds`` in dataset order (see :class:`DeviceBatches`)."""
    return DeviceBatches(ds, batch_size, device, opts)


class EpochSampler(Sampler[int]):
    """A shuffle whose order depends only on ``(seed, epoch)``, for a DataLoader reused across epochs.

    Epoch e draws exactly the permutation ``build_loader(ds, bs, shuffle=True, seed=seed_of(e))``
    draws (one int64 for the workers' base seed, then ``randperm``), so runs and resumes keep the
    orders of the per-epoch loaders they replace.
    """

    def __init__(self, n: int, seed_of: Callable[[int], int]) -> None:
        self.n, self.seed_of, self.epoch = n, seed_of, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator()
        gen.manual_seed(self.seed_of(self.epoch))
        torch.empty((), dtype=torch.int64).random_(generator=gen)
        return iter(torch.randperm(self.n, generator=gen).tolist())
