"""Released ImageNet-C / ImageNet-P layouts on disk give the right numbers (issue 11, items 2, 6, 7)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from robustune.config import EvalConfig
from robustune.data.digits import TensorImageDataset
from robustune.eval import corruption_metrics as cm
from robustune.eval import evaluate
from robustune.eval.ood_suites import corruption_summary_cells
from robustune.eval.results import EvalResults


class Brightness(nn.Module):
    """Class 1 when the image's mean is above 0.5: predictions a test controls through pixel values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1)


def clean_set(n: int = 4) -> TensorImageDataset:
    return TensorImageDataset(torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)),
                              [i % 2 for i in range(n)], ["cat", "dog"])


def write_imagenet_c(root, corruptions, severities=(1, 2, 3, 4, 5), classes=("cat", "dog")):
    """``root/<corruption>/<severity>/<class>/<file>.png`` with brightness varying per cell."""
    for ci, c in enumerate(corruptions):
        for s in severities:
            for k, cls in enumerate(classes):
                (root / c / str(s) / cls).mkdir(parents=True, exist_ok=True)
                for i in range(1):
                    value = (37 * ci + 53 * s + 101 * k + 71 * i) % 256
                    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(root / c / str(s) / cls / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def released_c(tmp_path_factory):
    """The released ImageNet-C layout: 15 benchmark + 4 extra corruptions, 5 severities each."""
    root = write_imagenet_c(tmp_path_factory.mktemp("imagenet-c"), [*cm.COMMON_CORRUPTIONS, *cm.EXTRA_CORRUPTIONS])
    out = tmp_path_factory.mktemp("eval")
    res = evaluate(Brightness(), clean_set(), EvalConfig(suites=["clean", "corruptions"], eps=[]), out,
                   classes=["cat", "dog"], options={"corruption_root": str(root), "normalizer": "alexnet"})
    return res


def test_released_layout_gives_mce_over_the_15_and_extras_apart(released_c):
    cells = released_c.cells
    err = {c: np.mean([1 - cells[f"corruptions/{c}/{s}"].value for s in range(1, 6)])
           for c in (*cm.COMMON_CORRUPTIONS, *cm.EXTRA_CORRUPTIONS)}
    mce = cells["corruptions/mCE"]
    assert mce.value == pytest.approx(100 * np.mean([err[c] / cm.ALEXNET_ERRORS[c] for c in cm.COMMON_CORRUPTIONS]))
    assert mce.details["corruptions"] == list(cm.COMMON_CORRUPTIONS)
    assert mce.details["excluded_extras"] == list(cm.EXTRA_CORRUPTIONS)
    clean_err = 1 - cells["clean"].value
    rel = [(err[c] - clean_err) / (cm.ALEXNET_ERRORS[c] - cm.ALEXNET_CLEAN_ERROR) for c in cm.COMMON_CORRUPTIONS]
    assert cells["corruptions/relative_mCE"].value == pytest.approx(100 * np.mean(rel))
    for c in cm.EXTRA_CORRUPTIONS:  # AlexNet has no errors for them: unnormalised CE, not in mCE
        assert f"corruptions/CE/{c}" not in cells
        assert cells[f"corruptions/unnormalized_CE/{c}"].value == pytest.approx(100 * err[c])
    # Hendrycks's test script: "mCE (unnormalized by AlexNet errors)" over all 19
    assert cells["corruptions/unnormalized_mCE"].value == pytest.approx(100 * np.mean(list(err.values())))
    assert len(cells["corruptions/unnormalized_mCE"].details["unnormalized_ce"]) == 19


def test_relative_mce_missing_is_logged_with_its_reason(released_c, caplog):
    without_clean = EvalResults({}, {}, 0, {}, cells={k: c for k, c in released_c.cells.items() if k != "clean"})
    with caplog.at_level(logging.WARNING):
        cells = {c.key: c for c in corruption_summary_cells(without_clean, {"normalizer": "alexnet"}, 2)}
    assert "corruptions/mCE" in cells and "corruptions/relative_mCE" not in cells
    assert "relative mCE not computed" in caplog.text and "clean" in caplog.text
    assert "clean" in cells["corruptions/mCE"].details["relative_mCE_note"]


def test_extras_get_a_reference_models_ce(released_c, tmp_path):
    res = EvalResults({}, {}, 0, {}, cells={k: c for k, c in released_c.cells.items() if k.count("/") == 2 or k == "clean"})
    ref_errors = {c: {s: 0.5 for s in range(1, 6)} for c in (*cm.COMMON_CORRUPTIONS, *cm.EXTRA_CORRUPTIONS)}
    s = cm.summarize_corruptions({c: {k: 1 - res.cells[f"corruptions/{c}/{k}"].value for k in range(1, 6)}
                                  for c in ref_errors}, None, cm.ReferenceErrors("ref", ref_errors, 0.1))
    assert set(s.ce) == set(cm.COMMON_CORRUPTIONS) and set(s.extra_ce) == set(cm.EXTRA_CORRUPTIONS)
    assert s.relative_mce is None and "clean" in s.relative_note


def test_corrupted_copy_with_other_classes_is_named(tmp_path):
    root = write_imagenet_c(tmp_path / "c", ["contrast"], (1,), classes=("cat", "cow"))
    with pytest.raises(ValueError, match=r"missing in the corrupted copy .*'dog'.*only in .*'cow'"):
        evaluate(Brightness(), clean_set(), EvalConfig(suites=["corruptions"], eps=[]), tmp_path / "out",
                 classes=["cat", "dog"], options={"corruption_root": str(root)})


def hendrycks_flip_prob(preds: list[int], noise: bool, difficulty: int) -> float:
    """Hendrycks's ImageNet-P ``flip_prob`` for one sequence, transcribed."""
    step = 1 if noise else difficulty
    flips = []
    for i in range(step):
        prev = preds[i]
        for pred in preds[i::step][1:]:
            flips.append(int(prev != pred))
            if not noise:
                prev = pred
    return float(np.mean(flips))


def test_imagenet_p_noise_rule_and_difficulty_folders(tmp_path):
    frames = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 255, 255, 255, 0, 0)])  # preds 0 1 1 1 0 0
    for folder in ("gaussian_noise_2", "gaussian_noise_3", "speckle_noise", "rotate"):
        (tmp_path / "p" / folder / "n01440764").mkdir(parents=True)
        np.save(tmp_path / "p" / folder / "n01440764" / "s0.npy", frames)
    preds = [0, 1, 1, 1, 0, 0]

    def run(out, difficulty, perturbations):
        return evaluate(Brightness(), clean_set(2), EvalConfig(suites=["imagenet-p"], eps=[]), tmp_path / out,
                        options={"imagenet_p_root": str(tmp_path / "p"), "perturbations": perturbations,
                                 "imagenet_p_difficulty": difficulty}).cells

    d1 = run("d1", 1, "speckle_noise,gaussian_noise_3,rotate")
    assert d1["imagenet-p/speckle_noise"].value == pytest.approx(hendrycks_flip_prob(preds, True, 1)) == 0.6
    assert d1["imagenet-p/gaussian_noise_3"].details["noise_rule"] is True
    assert d1["imagenet-p/gaussian_noise_3"].value == pytest.approx(0.6)
    assert d1["imagenet-p/rotate"].value == pytest.approx(hendrycks_flip_prob(preds, False, 1)) == 0.4
    d2 = run("d2", 2, "gaussian_noise,rotate")
    noise = d2["imagenet-p/gaussian_noise/difficulty=2"]
    assert noise.details["folder"] == "gaussian_noise_2" and noise.details["step"] == 1
    assert noise.value == pytest.approx(hendrycks_flip_prob(preds, True, 2))
    rotate = d2["imagenet-p/rotate/difficulty=2"]
    assert rotate.details["step"] == 2 and rotate.value == pytest.approx(hendrycks_flip_prob(preds, False, 2)) == 0.75
    with pytest.raises(ValueError, match="imagenet_p_difficulty must be one of"):
        run("d9", 9, "rotate")
