"""Corruption / perturbation metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from robustune.eval import corruption_metrics as cm

# The AlexNet table as printed in protocols.md, copied here so a typo in the module is caught.
ALEX = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}


def made_up_errors():
    """Corruption i gets errors 0.30 + 0.02 i + 0.1 (s − 1), so its mean error is 0.50 + 0.02 i."""
    return {c: {s: 0.30 + 0.02 * i + 0.1 * (s - 1) for s in range(1, 6)}
            for i, c in enumerate(ALEX)}


def test_alexnet_table_matches_protocol():
    assert cm.ALEXNET_ERRORS == ALEX
    assert list(cm.COMMON_CORRUPTIONS) == list(ALEX)


def test_mce_and_relative_mce_by_hand():
    errors = made_up_errors()
    clean = 0.2
    s = cm.summarize_corruptions(errors, clean_error=clean, reference=cm.alexnet_reference())
    # by hand: CE_c = Σ_s E / Σ_s E_alex = 5 · mean / (5 · alex_mean)
    ce = {c: 100 * (0.50 + 0.02 * i) / ALEX[c] for i, c in enumerate(ALEX)}
    assert s.ce["gaussian_noise"] == pytest.approx(100 * 0.50 / 0.886428)
    assert s.ce["jpeg_compression"] == pytest.approx(100 * 0.78 / 0.606500)
    assert s.mce == pytest.approx(sum(ce.values()) / 15)
    # relative: Σ_s (E − E_clean) / Σ_s (E_alex − E_alex_clean)
    rel = {c: 100 * (0.50 + 0.02 * i - clean) / (ALEX[c] - cm.ALEXNET_CLEAN_ERROR)
           for i, c in enumerate(ALEX)}
    assert s.relative_ce["brightness"] == pytest.approx(100 * (0.50 + 0.2 - 0.2) / (0.564592 - 0.43478))
    assert s.relative_mce == pytest.approx(sum(rel.values()) / 15)
    assert s.mean_corruption_accuracy == pytest.approx(1 - np.mean([0.50 + 0.02 * i for i in range(15)]))
    assert s.normalizer.startswith("AlexNet")


def test_mce_with_reference_model_is_100_for_itself_and_named():
    errors = made_up_errors()
    ref = cm.ReferenceErrors(name="erm", errors=errors, clean_error=0.2)
    s = cm.summarize_corruptions(errors, clean_error=0.2, reference=ref)
    assert s.mce == pytest.approx(100.0)
    assert s.relative_mce == pytest.approx(100.0)
    assert s.normalizer == "erm"
    half = {c: {k: v / 2 for k, v in e.items()} for c, e in errors.items()}
    assert cm.summarize_corruptions(half, reference=ref).mce == pytest.approx(50.0)


def test_alexnet_needs_all_severities_and_no_reference_gives_accuracy_only():
    errors = {"fog": {1: 0.5, 2: 0.6}}
    with pytest.raises(ValueError, match="all 5 severities"):
        cm.summarize_corruptions(errors, reference=cm.alexnet_reference())
    s = cm.summarize_corruptions(errors)
    assert s.mce is None and s.normalizer is None
    assert s.mean_corruption_accuracy == pytest.approx(0.45)


def test_flip_probability_noise_vs_consecutive_rule():
    # frames 0..4; sequence A flips once and comes back, B never flips.
    preds = np.array([[1, 2, 1, 1, 1],
                      [3, 3, 3, 3, 3]])
    # consecutive: A has pairs (0,1) (1,2) (2,3) (3,4) -> 2 flips of 4; B 0 -> mean 0.25
    assert cm.flip_probability(preds, noise=False) == pytest.approx((2 / 4 + 0) / 2)
    # noise: every frame vs the first: A differs only at frame 1 -> 1 of 4
    assert cm.flip_probability(preds, noise=True) == pytest.approx((1 / 4 + 0) / 2)
    drift = np.array([[0, 1, 2, 3]])  # changes every frame
    assert cm.flip_probability(drift, noise=False) == 1.0
    assert cm.flip_probability(drift, noise=True) == 1.0
    back = np.array([[0, 1, 0, 1]])
    assert cm.flip_probability(back, noise=True) == pytest.approx(2 / 3)
    assert cm.flip_probability(back, noise=False) == 1.0


def test_flip_rate_and_mfr():
    s = cm.summarize_perturbations({"rotate": 0.1, "gaussian_noise": 0.3},
                                   reference_fp={"rotate": 0.2, "gaussian_noise": 0.3},
                                   reference_name="alexnet-user")
    assert s.flip_rate == {"rotate": pytest.approx(50.0), "gaussian_noise": pytest.approx(100.0)}
    assert s.mfr == pytest.approx(75.0)
    assert s.normalizer == "alexnet-user"


def test_top5_distance_by_hand():
    base = np.array([9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0])  # ranks: class k at rank k+1
    assert cm.top5_distance_pair(base, base) == 0
    swap = base.copy()
    swap[[0, 1]] = swap[[1, 0]]  # top-1 and top-2 swap: |g(1)-g(2)| + |g(2)-g(1)| = 1 + 1
    assert cm.top5_distance_pair(base, swap) == 2
    drop = base.copy()
    drop[0] = -1  # class 0 falls from rank 1 to rank 10: classes 1..4 move up one rank
    # i=1: σ=10 -> |0-5| = 5; i=2..5: σ=i-1 -> |g(i)-g(i-1)| = 1 each
    assert cm.top5_distance_pair(base, drop) == 5 + 4
    seq = np.stack([base, swap, swap])[None]
    assert cm.top5_distance(seq, noise=False) == pytest.approx((2 + 0) / 2)
    assert cm.top5_distance(seq, noise=True) == pytest.approx((2 + 2) / 2)


def test_200_class_masking_on_synthetic_logits():
    indices = [3, 10, 42, 999]
    logits = torch.zeros(3, 1000)
    logits[0, 7] = 10.0  # global argmax outside the subset ...
    logits[0, 42] = 5.0  # ... but within the subset class 42 (subset index 2) wins
    logits[1, 999] = 1.0  # subset index 3
    logits[2, 3] = 2.0
    logits[2, 10] = 3.0  # subset index 1
    labels = torch.tensor([2, 3, 0])
    masked = cm.masked_logits(logits, indices)
    assert masked.shape == (3, 4)
    assert masked.argmax(1).tolist() == [2, 3, 1]
    assert cm.subset_top1_correct(logits, labels, indices).tolist() == [True, True, False]
    assert logits.argmax(1).tolist()[0] == 7  # unmasked the first would be wrong
    # a 200-way head is used as is
    assert cm.masked_logits(torch.randn(2, 4), indices).shape == (2, 4)


def test_zero_reference_error_is_reported():
    ref = cm.ReferenceErrors(name="perfect", errors={"fog": {1: 0.0}}, clean_error=0.0)
    with pytest.raises(ValueError, match="zero error"):
        cm.summarize_corruptions({"fog": {1: 0.1}}, reference=ref)
    assert math.isclose(cm.mean_error({1: 0.2, 2: 0.4}), 0.3)
