"""The paper-recipe preset runs as-is, with random weights and a tiny fake ImageNet folder."""

import numpy as np
from PIL import Image

from robustune.config import load_config
from robustune.engine import train


def _fake_imagenet(root, wnids=("n01440764", "n01443537", "n01484850"), per_class=2):
    for split in ("train", "val"):
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(per_class):
                rng = np.random.default_rng(10 * c + i)
                img = (rng.random((40, 48, 3)) * 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{wnid}_{i}.JPEG")


def test_gfn_vit_b16_imagenet_preset_runs_on_fake_imagenet(tmp_path):
    _fake_imagenet(tmp_path / "imagenet")
    cfg = load_config("configs/gfn_vit_b16_imagenet.yaml", [
        "model.weights=null", f"data.root={tmp_path / 'imagenet'}", "data.batch_size=3",
        "data.eval_batch_size=6", "data.num_workers=0", "data.pin_memory=false", "train.max_steps=1",
        "train.log_every=1"])
    # the recipe itself is untouched
    assert cfg.model.name == "vit_base_patch16_224" and cfg.optim.name == "sgd"
    assert cfg.optim.lr == 1e-3 and cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 5e-4
    assert cfg.method.params == {"eta": 0.01, "eta_space": "normalized", "k": 20, "alpha": 0.5,
                                 "loss": "neighbor_margin", "beta": 10, "max_per_class": 100}
    result = train(cfg, tmp_path / "run")
    assert result.method.k == 2  # k = 20 clamped to C - 1 on the 3-class fake set
    assert (tmp_path / "run" / "similarity.safetensors").exists()
    assert result.splits.train[0][0].shape == (3, 224, 224)  # the model's own data config


def test_subset_preset_is_the_same_recipe_on_5000_images():
    a = load_config("configs/gfn_vit_b16_imagenet.yaml")
    b = load_config("configs/gfn_vit_b16_imagenet_subset5k.yaml")
    assert b.data.train_subset == 5000 and a.data.train_subset is None
    assert a.method == b.method and a.optim == b.optim and a.model == b.model
