"""Loaders (robustune.data.loading): uint8 transport, workers, batched decode, epoch-seeded shuffles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset, TensorDataset

from robustune.data.folder import ImageFolderDataset
from robustune.data.loading import (DeviceBatches, EpochSampler, LoaderOptions, default_num_workers,
                                    device_batches, resolve_workers)
from robustune.data.splits import IndexedDataset, build_loader
from robustune.data.transforms import build_transform


@pytest.fixture(scope="module")
def jpeg_tree(tmp_path_factory):
    """3 classes × 4 JPEGs of different sizes, each a distinct smooth pattern."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"n0000000{c}").mkdir()
        for i in range(4):
            h, w = 40 + 3 * i, 48 + 5 * c
            base = rng.integers(30, 220, size=3)
            ramp = np.linspace(0, 30, w)[None, :, None]
            img = np.clip(base[None, None, :] + ramp + np.zeros((h, 1, 1)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"n0000000{c}" / f"img{i}.JPEG", quality=90)
    return root


def _dataset(root):
    return ImageFolderDataset(root, transform=build_transform(32, 0.875, "bicubic"), verify=False)


def test_uint8_transport_with_workers_is_bit_identical_in_order(jpeg_tree):
    ds = _dataset(jpeg_tree)
    part = Subset(ds, [5, 0, 11, 3, 7])
    want = torch.stack([part[i][0] for i in range(len(part))])
    want_y = [part[i][1] for i in range(len(part))]
    batches = list(device_batches(part, 2, "cpu", LoaderOptions(num_workers=2)))
    got = torch.cat([x for x, _ in batches])
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.cat([torch.as_tensor(y) for _, y in batches]).tolist() == want_y


def test_items_travel_as_uint8(jpeg_tree):
    loader = DeviceBatches(_dataset(jpeg_tree), 4, "cpu", LoaderOptions(num_workers=0)).loader
    x, _ = next(iter(loader))
    assert x.dtype == torch.uint8


def test_torchvision_batched_decode_gives_same_labels_order_and_images(jpeg_tree):
    ds = _dataset(jpeg_tree)
    pil = list(device_batches(ds, 5, "cpu", LoaderOptions(num_workers=0)))
    tv = list(device_batches(ds, 5, "cpu", LoaderOptions(num_workers=2, decode="torchvision")))
    assert [y.tolist() for _, y in pil] == [y.tolist() for _, y in tv]
    a, b = torch.cat([x for x, _ in pil]), torch.cat([x for x, _ in tv])
    assert a.shape == b.shape
    # decoders may differ by a grey level or two on some pixels, never by image
    assert (a - b).abs().max().item() <= 3 / 255
    means = a.mean(dim=(1, 2, 3))
    assert torch.allclose(means, b.mean(dim=(1, 2, 3)), atol=1 / 255)


def test_workers_default_to_cores_for_files_and_zero_in_memory(jpeg_tree):
    assert resolve_workers(Subset(_dataset(jpeg_tree), [0, 1]), LoaderOptions()) == default_num_workers()
    assert resolve_workers(TensorDataset(torch.zeros(4, 3)), LoaderOptions()) == 0
    assert resolve_workers(TensorDataset(torch.zeros(4, 3)), LoaderOptions(num_workers=3)) == 3


def test_ranks_on_one_node_share_its_cores_for_decode_workers(monkeypatch):
    import robustune.data.loading as loading

    monkeypatch.setattr(loading, "available_cores", lambda: 96)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loading.default_num_workers() == 12  # one process: capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert loading.default_num_workers() == 12  # 96 cores / 8 ranks
    monkeypatch.setattr(loading, "available_cores", lambda: 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loading.default_num_workers() == 1  # not 2 workers per rank on 2 cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loading.default_num_workers() == 1  # never 0: 0 would mean decoding on the main thread


def test_epoch_sampler_replays_the_per_epoch_loader_orders():
    ds = TensorDataset(torch.arange(97))
    sampler = EpochSampler(len(ds), lambda e: 11 * 10_007 + e)
    for epoch in (0, 1, 5):
        old = torch.cat([b[0] for b in build_loader(ds, 8, shuffle=True, seed=11 * 10_007 + epoch)])
        sampler.set_epoch(epoch)
        assert list(sampler) == old.tolist()


def test_one_loader_serves_every_epoch_with_indices(jpeg_tree):
    ds = IndexedDataset(_dataset(jpeg_tree))
    sampler = EpochSampler(len(ds), lambda e: e)
    batches = DeviceBatches(ds, 4, "cpu", LoaderOptions(num_workers=1), sampler=sampler)
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        order = [int(i) for _, _, idx in batches for i in idx]
        assert sorted(order) == list(range(len(ds)))
        seen.append(order)
    assert seen[0] != seen[1]
    assert batches.loader._iterator is not None  # persistent workers: the same iterator was reused


def test_unknown_decoder_is_named():
    with pytest.raises(ValueError, match="valid: pil, torchvision"):
        LoaderOptions(decode="nvjpeg")


def test_cells_in_memory_is_refused_when_too_big(tmp_path):
    from robustune.config import ConfigError
    from robustune.data.robustness_sets import check_cells_fit_in_memory

    for c in ("fog", "snow"):
        for s in (1, 2):
            d = tmp_path / c / str(s) / "n01"
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.zeros((20, 10, 3), np.uint8)).save(d / f"{i}.png")
    cells = {"fog": [1, 2], "snow": [1, 2]}
    assert check_cells_fit_in_memory(tmp_path, cells, available=10**6) == 4 * 4 * 20 * 10 * 3
    with pytest.raises(ConfigError, match="cells_in_memory would keep .* drop --option cells_in_memory"):
        check_cells_fit_in_memory(tmp_path, cells, available=4 * 4 * 20 * 10 * 3)
