"""Every paper preset runs one optimizer step (train.max_steps=1) as-is, with random weights, on a
tiny fake data set of the layout it reads: an ImageNet folder for GFN, CoOp's ImageNet layout for
the CLIP prompt methods (their default few-shot source)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustune.config import load_config
from robustune.engine import train
from robustune.engine.metrics import read_metrics

WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")
NAMES = ("tench", "goldfish", "great white shark", "tiger shark")
CLIP_PRESETS = ["fap_vit_b32", "erapt_vit_b32", "coop_vit_b32", "apt_vit_b32", "adv_vp_vit_b32",
                "adv_vlp_vit_b32", "adv_maple_vit_b32"]
# gfn_vit_b16_imagenet runs one step at its own 224 px in test_gfn_preset.py.
GFN_PRESETS = ["gfn_vit_b16_imagenet_subset5k"]
# Ours, for test time only: the ViT-B models see 64 px images (the architecture, prompts, method,
# optimiser, schedule and batch are the preset's).
SMALL_IMAGES = {"clip": "model.kwargs.force_image_size=64", "timm": "model.kwargs.img_size=64"}


def _images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        img = (np.random.default_rng(seed * 10 + i).random((40, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img_{i}.JPEG")


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("preset_data")
    for c, wnid in enumerate(WNIDS):
        _images(root / "imagenet" / "train" / wnid, 2, c)  # ImageNet folder layout (GFN)
        _images(root / "imagenet" / "val" / wnid, 1, 50 + c)
        _images(root / "coop" / "imagenet" / "images" / "train" / wnid, 3, c)  # CoOp's layout
        _images(root / "coop" / "imagenet" / "images" / "val" / wnid, 1, 50 + c)
    (root / "coop" / "imagenet" / "classnames.txt").write_text(
        "".join(f"{w} {n}\n" for w, n in zip(WNIDS, NAMES)))
    return root


@pytest.fixture(scope="module", autouse=True)
def _random_init_once():
    """Random init of a ViT-B (86-151 M parameters) takes seconds: each architecture is built once
    and copied per preset (same random weights for every preset; the presets are what differs)."""
    import copy

    import open_clip
    import timm

    patched = []
    for module in (open_clip, timm):
        real, built = module.create_model, {}

        def create_model(*args, _real=real, _built=built, **kwargs):
            key = repr((args, sorted(kwargs.items())))
            if key not in _built:
                _built[key] = _real(*args, **kwargs)
            return copy.deepcopy(_built[key])

        module.create_model = create_model
        patched.append((module, real))
    yield
    for module, real in patched:
        module.create_model = real


def _one_step(preset: str, overrides: list[str], run: Path):
    cfg = load_config(f"configs/{preset}.yaml", overrides)
    result = train(cfg, run)
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == [1] and (run / "model.safetensors").exists()
    return cfg, result


@pytest.mark.parametrize("preset", CLIP_PRESETS)
def test_clip_preset_runs_one_step(preset, fake_roots, tmp_path):
    reference = load_config(f"configs/{preset}.yaml")
    assert reference.data.options["source"] == "fewshot_imagenet"  # real class names, not wnids
    overrides = ["model.weights=null", f"data.root={fake_roots / 'coop'}", "train.max_steps=1",
                 "data.num_workers=0", "train.log_every=1", SMALL_IMAGES["clip"]]
    cfg, result = _one_step(preset, overrides, tmp_path / "run")
    assert cfg.method == reference.method and cfg.optim == reference.optim
    assert result.splits.classes == ["tench", "goldfish"]  # the base half, by name


@pytest.mark.parametrize("preset", GFN_PRESETS)
def test_gfn_preset_runs_one_step(preset, fake_roots, tmp_path):
    reference = load_config(f"configs/{preset}.yaml")
    overrides = ["model.weights=null", f"data.root={fake_roots / 'imagenet'}", "train.max_steps=1",
                 "data.num_workers=0", "data.pin_memory=false", "train.log_every=1",
                 SMALL_IMAGES["timm"]]
    cfg, result = _one_step(preset, overrides, tmp_path / "run")
    assert cfg.method == reference.method and cfg.optim == reference.optim
    assert result.method.k == 3  # k = 20 clamped to C - 1 on the 4-class fake set


def test_zeroshot_preset_writes_an_evaluable_run(fake_roots, tmp_path):
    from robustune.runs.zeroshot import write_zeroshot_run

    cfg = load_config("configs/zeroshot_vit_b32.yaml", [
        "model.weights=null", f"data.root={fake_roots / 'coop'}", SMALL_IMAGES["clip"]])
    assert cfg.data.options["source"] == "fewshot_imagenet"
    run = write_zeroshot_run(cfg, tmp_path / "zs")
    assert (run / "model.safetensors").exists() and (run / "config.yaml").exists()
