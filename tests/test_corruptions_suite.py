"""OOD suites end to end on tiny data: corruptions (resume, reference mCE), CIFAR-C arrays, ImageNet-A/P."""

import numpy as np
import pytest
import torch
from torch import nn

from robustune.config import EvalConfig
from robustune.corruptions import corrupt_dataset
from robustune.data.robustness_sets import (
    CorruptionArrayDataset,
    PerturbationSequences,
    imagenet_subset_indices,
    imagenet_subset_wnids,
)
from robustune.data.digits import TensorImageDataset
from robustune.eval import corruption_metrics as cm
from robustune.eval import evaluate, ood_suites
from robustune.models import create_classifier


def tiny_dataset(n=8):
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return TensorImageDataset(x, [i % 2 for i in range(n)], ["cat", "dog"])


def model(seed):
    torch.manual_seed(seed)
    return create_classifier("small_cnn", num_classes=2, width=4)


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    corrupt_dataset(tiny_dataset(), root, "gaussian_noise,contrast", "1,2")
    return root


def run(m, out, root, **opts):
    cfg = EvalConfig(suites=["clean", "corruptions"], eps=[])
    return evaluate(m, tiny_dataset(), cfg, out, classes=["cat", "dog"], model_info={"run_name": out.name},
                    options={"corruption_root": str(root), **opts})


def test_corruption_cells_reference_mce_and_resume(tmp_path, corrupted, monkeypatch):
    ref = run(model(0), tmp_path / "erm", corrupted)
    assert {f"corruptions/{c}/{s}" for c in ("gaussian_noise", "contrast") for s in (1, 2)} <= set(ref.cells)
    assert "corruptions/mCE" not in ref.cells  # no reference, no AlexNet row for 2 classes
    assert ref.cells["corruptions/mean_corruption_accuracy"].metric == "mean_corruption_accuracy"
    res = run(model(1), tmp_path / "other", corrupted, reference_results=str(tmp_path / "erm"))
    mce = res.cells["corruptions/mCE"]
    assert mce.details["normalizer"] == "reference model: erm"
    # by hand from the stored cells: CE_c = Σ_s E / Σ_s E_ref, mCE = 100 · mean_c CE_c
    by_hand = []
    for c in ("gaussian_noise", "contrast"):
        e = sum(1 - res.cells[f"corruptions/{c}/{s}"].value for s in (1, 2))
        e_ref = sum(1 - ref.cells[f"corruptions/{c}/{s}"].value for s in (1, 2))
        by_hand.append(100 * e / e_ref)
        assert res.cells[f"corruptions/CE/{c}"].value == pytest.approx(by_hand[-1])
    assert mce.value == pytest.approx(np.mean(by_hand))
    same = run(model(0), tmp_path / "erm2", corrupted, reference_results=str(tmp_path / "erm" / "results.json"))
    assert same.cells["corruptions/mCE"].value == pytest.approx(100.0)

    calls = []
    real = ood_suites.predict
    monkeypatch.setattr(ood_suites, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = run(model(1), tmp_path / "other", corrupted, reference_results=str(tmp_path / "erm"))
    assert calls == []  # every (corruption, severity) cell was resumed from results.json
    assert again.cells["corruptions/mCE"].value == pytest.approx(mce.value)


def test_cells_in_memory_give_the_same_cells(tmp_path, corrupted):
    """cells_in_memory (the demo's: each PNG decoded once per process) changes no number."""
    from robustune.data.robustness_sets import corruption_cell, memory_cell

    on_disk = run(model(1), tmp_path / "disk", corrupted)
    in_memory = run(model(1), tmp_path / "mem", corrupted, cells_in_memory=True)
    assert {k: c.value for k, c in on_disk.cells.items()} == {k: c.value for k, c in in_memory.cells.items()}
    disk, mem = corruption_cell(corrupted, "contrast", 2), memory_cell(corrupted, "contrast", 2)
    assert all(torch.equal(disk[i][0], mem[i][0]) and disk[i][1] == mem[i][1] for i in range(len(disk)))
    assert memory_cell(corrupted, "contrast", 2).images is mem.images  # decoded once, then shared
    # a number-neutral option: resuming the on-disk results with it re-uses every cell, no refusal
    resumed = run(model(1), tmp_path / "disk", corrupted, cells_in_memory=True)
    assert {k: c.value for k, c in resumed.cells.items()} == {k: c.value for k, c in on_disk.cells.items()}


def test_suite_errors_are_clear(tmp_path, corrupted):
    with pytest.raises(ValueError, match="corruption_root"):
        run(model(0), tmp_path / "a", "")
    with pytest.raises(FileNotFoundError, match="fog"):
        run(model(0), tmp_path / "b", corrupted, corruptions="fog")


def test_cifar_c_arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "fog.npy", rng.integers(0, 255, (5 * 6, 32, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "labels.npy", np.tile(np.arange(6) % 2, 5))
    ds = CorruptionArrayDataset(tmp_path, "fog", 3, per_severity=6)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and len(ds) == 6
    with pytest.raises(FileNotFoundError):
        CorruptionArrayDataset(tmp_path, "snow", 1)


class FixedLogits(nn.Module):
    """A 1000-way 'model' whose logits favour ``wrong`` globally and ``right`` inside the subset."""

    input_size = (3, 32, 32)

    def __init__(self, right, wrong):
        super().__init__()
        self.right, self.wrong = right, wrong

    def forward(self, x):
        out = torch.zeros(len(x), 1000)
        out[:, self.wrong] = 9.0
        out[:, self.right] = 5.0
        return out


def test_imagenet_a_suite_masks_to_200_classes(tmp_path):
    from PIL import Image

    wnids = imagenet_subset_wnids("imagenet-a")
    assert len(wnids) == len(set(wnids)) == 200
    idx = imagenet_subset_indices("imagenet-a")
    root = tmp_path / "imagenet-a"
    (root / wnids[5]).mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / wnids[5] / "x.png")
    outside = next(i for i in range(1000) if i not in idx)
    m = FixedLogits(right=idx[5], wrong=outside)
    cfg = EvalConfig(suites=["imagenet-a"], eps=[])
    res = evaluate(m, tiny_dataset(2), cfg, tmp_path / "out", options={"imagenet_a_root": str(root)})
    cell = res.cells["imagenet-a"]
    assert cell.value == 1.0 and cell.details["head_classes"] == 1000


def test_imagenet_p_sequences_npy_and_mp4(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    for p in ("gaussian_noise", "rotate"):
        (tmp_path / p / "cat").mkdir(parents=True)
        np.save(tmp_path / p / "cat" / "s0.npy", rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    writer = cv2.VideoWriter(str(tmp_path / "rotate" / "cat" / "s1.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (32, 32))
    for t in range(3):
        writer.write(np.full((32, 32, 3), 40 * t, np.uint8))
    writer.release()
    seqs = PerturbationSequences(tmp_path, "rotate")
    assert len(seqs) == 2 and seqs[1][0].shape == (3, 3, 32, 32)
    m = model(0)
    cfg = EvalConfig(suites=["imagenet-p"], eps=[])
    res = evaluate(m, tiny_dataset(2), cfg, tmp_path / "out",
                   options={"imagenet_p_root": str(tmp_path),
                            "imagenet_p_reference": {"rotate": 0.5, "gaussian_noise": 0.25}})
    with torch.no_grad():
        preds = m.eval()(PerturbationSequences(tmp_path, "gaussian_noise")[0][0]).argmax(1)
    fp = cm.flip_probability(preds[None].numpy(), noise=True)
    assert res.cells["imagenet-p/gaussian_noise"].value == pytest.approx(fp)
    assert res.cells["imagenet-p/gaussian_noise"].details["noise_rule"] is True
    expected = np.mean([100 * res.cells["imagenet-p/rotate"].value / 0.5, 100 * fp / 0.25])
    assert res.cells["imagenet-p/mFR"].value == pytest.approx(expected)
