"""Corruption generation: determinism, resume, bad sources, upsampling, caching, CLI."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from robustune.corruptions import (
    corrupt_dataset,
    corrupt_image,
    ensure_corrupted_dataset,
    list_corruptions,
    read_manifest,
    resolve_corruptions,
    resolve_severities,
)
from robustune.corruptions import generate as gen
from robustune.data.digits import TensorImageDataset


def tiny_dataset(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    return TensorImageDataset(x, [i % 2 for i in range(n)], ["cat", "dog"])


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_every_corruption_is_seeded():
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    assert len(list_corruptions()) == 19
    for name in list_corruptions():
        a, b = corrupt_image(img, name, 2, seed=5), corrupt_image(img, name, 2, seed=5)
        assert a.dtype == np.uint8 and a.shape == img.shape
        assert np.array_equal(a, b), name
    for name in ("gaussian_noise", "impulse_noise", "glass_blur", "snow", "elastic_transform"):
        assert not np.array_equal(corrupt_image(img, name, 2, seed=1), corrupt_image(img, name, 2, seed=2)), name


def test_selection_parsing():
    assert resolve_corruptions("common")[:3] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert len(resolve_corruptions("all")) == 19
    assert resolve_corruptions("fog,noise") == ["fog", "gaussian_noise", "shot_noise", "impulse_noise"]
    with pytest.raises(ValueError, match="Did you mean 'fog'"):
        resolve_corruptions("fogg")
    assert resolve_severities("1-3,5") == [1, 2, 3, 5]
    with pytest.raises(ValueError):
        resolve_severities("0-2")


def test_same_seed_gives_byte_identical_files_with_any_worker_count(tmp_path):
    ds = tiny_dataset()
    kw = dict(corruptions="gaussian_noise,motion_blur,frost", severities="1,4", seed=3)
    corrupt_dataset(ds, tmp_path / "a", workers=1, **kw)
    corrupt_dataset(ds, tmp_path / "b", workers=2, **kw)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert len(a) == 4 * 3 * 2 and a == b
    assert "frost/4/dog/00001.png" in a  # ImageNet-C layout <corruption>/<severity>/<class>/<file>
    corrupt_dataset(ds, tmp_path / "c", workers=1, **{**kw, "seed": 4})
    assert files_of(tmp_path / "c") != a
    manifest = read_manifest(tmp_path / "a")
    assert manifest["classes"] == ["cat", "dog"] and manifest["seed"] == 3


def test_interrupted_run_resumes_without_redoing_finished_files(tmp_path, monkeypatch):
    ds = tiny_dataset()
    calls = {"n": 0}
    real = gen.corrupt_image

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "corrupt_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        corrupt_dataset(ds, tmp_path, "brightness,contrast", "1-2", workers=1)
    done = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.png")}
    assert len(done) == 5
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written file left behind
    monkeypatch.setattr(gen, "corrupt_image", real)
    report = corrupt_dataset(ds, tmp_path, "brightness,contrast", "1-2", workers=1)
    assert report.written == 4 * 2 * 2 - 5 and report.existing == 5
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished files untouched
    fresh = tmp_path.parent / "fresh"
    corrupt_dataset(ds, fresh, "brightness,contrast", "1-2", workers=1)
    assert files_of(tmp_path) == files_of(fresh)  # resumed == uninterrupted, byte for byte
    again = corrupt_dataset(ds, tmp_path, "brightness,contrast", "1-2", workers=1)
    assert again.written == 0


def test_corrupt_source_image_is_reported_and_skipped(tmp_path, caplog):
    src = tmp_path / "src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(src / cls / "good.png")
    (src / "b" / "broken.png").write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING):
        report = corrupt_dataset(src, tmp_path / "out", "contrast", "2", workers=1)
    assert [f["source"] for f in report.failed] == ["b/broken"]
    assert "unreadable" in caplog.text
    assert sorted(files_of(tmp_path / "out")) == ["contrast/2/a/good.png", "contrast/2/b/good.png"]
    assert read_manifest(tmp_path / "out")["failed"][0]["source"] == "b/broken"


def test_small_images_are_upsampled_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        report = corrupt_dataset(tiny_dataset(n=2, size=8), tmp_path, "brightness", "1", jpeg_quality=85)
    assert report.upsampled == 2 and "upsampled" in caplog.text
    out = sorted(tmp_path.rglob("*.jpg"))
    assert len(out) == 2
    with Image.open(out[0]) as img:
        assert img.size == (32, 32) and img.format == "JPEG"


def test_ensure_corrupted_dataset_is_a_noop_when_cached(tmp_path, monkeypatch):
    out = ensure_corrupted_dataset("digits", tmp_path, "contrast", "1")
    pngs = list(out.rglob("*.png"))
    assert len(pngs) == 360
    import robustune.data as data

    def boom(*a, **k):
        raise AssertionError("dataset rebuilt although cached")

    monkeypatch.setattr(data, "create_dataset", boom)
    assert ensure_corrupted_dataset("digits", tmp_path, "contrast", "1") == out
    with pytest.raises(AssertionError, match="rebuilt"):  # a new corruption is not cached
        ensure_corrupted_dataset("digits", tmp_path, "contrast,brightness", "1")


def test_cli_corrupt_digits(tmp_path, capsys):
    from robustune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["corrupt", "digits", "--out", str(tmp_path), "--corruptions", "pixelate",
              "--severities", "2", "--workers", "1"])
    assert exc.value.code in (0, None)
    files = list((tmp_path / "pixelate" / "2").rglob("*.png"))
    assert len(files) == 360
    assert sorted(p.name for p in (tmp_path / "pixelate" / "2").iterdir())[0] == "eight"
    assert "360 images" in capsys.readouterr().out


def test_cli_corrupt_uses_the_available_cores_by_default(tmp_path, monkeypatch):
    import os

    import robustune.corruptions as corruptions
    from robustune.cli import main

    seen = {}

    def fake(source, out, corruptions_, severities, **kw):
        seen["workers"] = kw["workers"]
        raise ValueError("stop here")

    monkeypatch.setattr(corruptions, "corrupt_dataset", fake)
    with pytest.raises(SystemExit):
        main(["corrupt", "digits", "--out", str(tmp_path), "--corruptions", "pixelate"])
    assert seen["workers"] == len(os.sched_getaffinity(0))
