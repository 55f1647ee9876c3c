"""Corruption and perturbation robustness metrics as pure functions returning dataclasses.

Hendrycks & Dietterich (2019), "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations": corruption error CE, mean CE (mCE), relative mCE, mean corruption accuracy
(ImageNet-C), flip probability, flip rate / mFR and top-5 distance / mT5D (ImageNet-P); plus the
200-class logit masking of ImageNet-A / ImageNet-R (Hendrycks et al. 2021).

Errors are fractions in [0, 1]; CE and mCE are reported as percentages (100 · ratio), the
convention of every published table (ResNet-50 mCE 76.7). Each result names its normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from robustune.corruptions.registry import COMMON_CORRUPTIONS, EXTRA_CORRUPTIONS  # noqa: F401 (re-exported)

PERTURBATIONS = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow", "brightness",
                 "translate", "rotate", "tilt", "scale")
EXTRA_PERTURBATIONS = ("speckle_noise", "gaussian_blur", "spatter", "shear")
P_DIFFICULTIES = (1, 2, 3, 4, 5)


def is_noise_perturbation(name: str) -> bool:
    """Hendrycks's ImageNet-P test script: every perturbation whose name contains ``noise``
    (gaussian_noise, shot_noise, speckle_noise and their ``_2`` / ``_3`` difficulty folders)."""
    return "noise" in name


def perturbation_source(name: str, difficulty: int = 1) -> tuple[str, int]:
    """(folder, frame step) of ``name`` at ImageNet-P ``difficulty``, as Hendrycks's test script reads it.

    Noise perturbations have one folder per difficulty (``gaussian_noise_2``) compared with step 1;
    the others use the difficulty as the step over the frames of their single folder.
    """
    if difficulty not in P_DIFFICULTIES:
        raise ValueError(f"imagenet_p_difficulty must be one of {P_DIFFICULTIES}, got {difficulty!r}")
    if difficulty == 1:
        return name, 1
    return (f"{name}_{difficulty}", 1) if is_noise_perturbation(name) else (name, difficulty)

# AlexNet's mean top-1 error over the 5 severities of each ImageNet-C corruption (as used by
# AugMix, RVT, TAPADL). CE_c = sum_s E_s / sum_s E^AlexNet_s = mean_s E_s / mean_s E^AlexNet_s.
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572, "fog": 0.819324,
    "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
# Clean top-1 error of torchvision's AlexNet (acc@1 56.522), the network of the ImageNet-C paper;
# only relative mCE uses it. Not in the protocol table: override with ``alexnet_clean_error=``.
ALEXNET_CLEAN_ERROR = 0.43478
ALEXNET_NAME = "AlexNet (Hendrycks & Dietterich 2019 table)"

ErrorTable = Mapping[str, Mapping[int, float]]  # corruption -> severity -> error in [0, 1]


@dataclass
class ReferenceErrors:
    """The normaliser of CE: a named model's errors per (corruption, severity) and clean error.

    ``mean_errors`` holds per-corruption means when per-severity values are unknown (AlexNet).
    """

    name: str
    errors: dict[str, dict[int, float]] = field(default_factory=dict)
    clean_error: float | None = None
    mean_errors: dict[str, float] = field(default_factory=dict)


def alexnet_reference(clean_error: float = ALEXNET_CLEAN_ERROR) -> ReferenceErrors:
    return ReferenceErrors(name=ALEXNET_NAME, clean_error=clean_error, mean_errors=dict(ALEXNET_ERRORS))


@dataclass
class CorruptionSummary:
    """Every ImageNet-C style number, each under its own name."""

    normalizer: str | None  # e.g. "AlexNet (...)" or "reference model: erm_digits"; None = no CE
    corruptions: list[str]
    severities: list[int]
    errors: dict[str, dict[int, float]]
    mean_corruption_accuracy: float  # mean over (corruption, severity) cells of top-1 accuracy
    mean_corruption_error: float  # 1 - mean_corruption_accuracy
    ce: dict[str, float] = field(default_factory=dict)  # percentage, per corruption
    mce: float | None = None  # percentage: 100 * mean_c CE_c
    relative_ce: dict[str, float] = field(default_factory=dict)
    relative_mce: float | None = None
    clean_error: float | None = None
    relative_note: str | None = None  # why relative mCE is undefined, when it is
    benchmark: list[str] = field(default_factory=list)  # the corruptions mCE averages over
    extras: list[str] = field(default_factory=list)  # EXTRA_CORRUPTIONS present: outside mCE
    extra_ce: dict[str, float] = field(default_factory=dict)  # percentage, when the reference has them
    unnormalized_ce: dict[str, float] = field(default_factory=dict)  # 100 · mean error over severities
    unnormalized_mce: float | None = None  # mean of unnormalized_ce over every corruption present
    mce_note: str | None = None  # why mCE is undefined, when it is


def mean_error(errors: Mapping[int, float], severities: Sequence[int] | None = None) -> float:
    sev = list(severities) if severities is not None else sorted(errors)
    return float(np.mean([errors[s] for s in sev]))


def corruption_error(errors: Mapping[int, float], corruption: str, reference: ReferenceErrors) -> float:
    """CE_c = Σ_s E_{s,c} / Σ_s E^{ref}_{s,c} (a ratio; ×100 for the usual percentage)."""
    if corruption in reference.errors:
        ref = reference.errors[corruption]
        shared = sorted(set(errors) & set(ref))
        if not shared:
            raise ValueError(f"reference {reference.name!r} has no severity of {corruption!r} in common")
        return sum(errors[s] for s in shared) / _positive(sum(ref[s] for s in shared), reference, corruption)
    if corruption in reference.mean_errors:
        _require_all_severities(errors, corruption, reference)
        return mean_error(errors) / _positive(reference.mean_errors[corruption], reference, corruption)
    raise ValueError(f"reference {reference.name!r} has no errors for corruption {corruption!r}")


def relative_corruption_error(errors: Mapping[int, float], clean_error: float, corruption: str,
                              reference: ReferenceErrors) -> float:
    """CE^rel_c = Σ_s (E_{s,c} − E_clean) / Σ_s (E^{ref}_{s,c} − E^{ref}_clean)."""
    if reference.clean_error is None:
        raise ValueError(f"reference {reference.name!r} has no clean error; relative CE needs it")
    if corruption in reference.errors:
        ref = reference.errors[corruption]
        shared = sorted(set(errors) & set(ref))
        num = sum(errors[s] - clean_error for s in shared)
        den = sum(ref[s] - reference.clean_error for s in shared)
    else:
        _require_all_severities(errors, corruption, reference)
        num = mean_error(errors) - clean_error
        den = reference.mean_errors[corruption] - reference.clean_error
    return num / _positive(den, reference, corruption)


def summarize_corruptions(errors: ErrorTable, clean_error: float | None = None,
                          reference: ReferenceErrors | None = None) -> CorruptionSummary:
    """mCE, relative mCE and mean corruption accuracy of an error table (corruption → severity → error).

    mCE = 100 · mean_c CE_c over the benchmark corruptions present (every corruption but the four
    ImageNet-C extras, so the 15 common ones for ImageNet-C); the extras (speckle_noise,
    gaussian_blur, spatter, saturate) get their own CE when the reference has them. Hendrycks's
    test script also prints the unnormalised CE of every corruption and their mean over all of
    them (19 for the released layout): ``unnormalized_ce`` / ``unnormalized_mce``. Without a
    ``reference`` only those and the mean corruption accuracy are defined.
    """
    corruptions = list(errors)
    cells = [e for c in corruptions for e in errors[c].values()]
    if not cells:
        raise ValueError("no corruption errors to summarise")
    mean_err = float(np.mean(cells))
    summary = CorruptionSummary(
        normalizer=reference.name if reference else None, corruptions=corruptions,
        severities=sorted({s for c in corruptions for s in errors[c]}),
        errors={c: dict(errors[c]) for c in corruptions}, mean_corruption_accuracy=1 - mean_err,
        mean_corruption_error=mean_err, clean_error=clean_error,
        benchmark=[c for c in corruptions if c not in EXTRA_CORRUPTIONS],
        extras=[c for c in corruptions if c in EXTRA_CORRUPTIONS],
        unnormalized_ce={c: 100 * mean_error(errors[c]) for c in corruptions})
    summary.unnormalized_mce = float(np.mean(list(summary.unnormalized_ce.values())))
    if reference is None:
        summary.mce_note = "no normaliser"
        return summary
    covered = set(reference.errors) | set(reference.mean_errors)
    summary.extra_ce = {c: 100 * corruption_error(errors[c], c, reference) for c in summary.extras if c in covered}
    if not summary.benchmark:
        summary.mce_note = "only the extra corruptions are present; mCE averages the benchmark ones"
        return summary
    summary.ce = {c: 100 * corruption_error(errors[c], c, reference) for c in summary.benchmark}
    summary.mce = float(np.mean(list(summary.ce.values())))
    if clean_error is None or reference.clean_error is None:
        summary.relative_note = ("relative mCE needs the clean error: evaluate the clean suite too"
                                 if clean_error is None else f"reference {reference.name!r} has no clean error")
        return summary
    try:
        summary.relative_ce = {c: 100 * relative_corruption_error(errors[c], clean_error, c, reference)
                               for c in summary.benchmark}
    except ValueError as exc:  # the reference lost no accuracy on some corruption
        summary.relative_note = str(exc)
    else:
        summary.relative_mce = float(np.mean(list(summary.relative_ce.values())))
    return summary


def _require_all_severities(errors: Mapping[int, float], corruption: str, ref: ReferenceErrors) -> None:
    if sorted(errors) != [1, 2, 3, 4, 5]:
        raise ValueError(f"{ref.name} gives only the mean error over severities 1-5 of {corruption!r}; "
                         f"evaluate all 5 severities (got {sorted(errors)}) or use a reference model")


def _positive(value: float, ref: ReferenceErrors, corruption: str) -> float:
    if value <= 0:
        raise ValueError(f"reference {ref.name!r} has zero error (or no error increase, for relative CE) "
                         f"on {corruption!r}: the ratio is undefined")
    return value


# ----------------------------------------------------------------------------- ImageNet-P


@dataclass
class PerturbationSummary:
    """Flip probabilities (FP), top-5 distances (T5D) and, given a normaliser, FR / mFR / mT5D."""

    normalizer: str | None
    flip_probability: dict[str, float]
    top5_distance: dict[str, float]
    flip_rate: dict[str, float] = field(default_factory=dict)  # percentage
    mfr: float | None = None
    top5_rate: dict[str, float] = field(default_factory=dict)
    mt5d: float | None = None


def _frame_pairs(n_frames: int, noise: bool, step: int = 1) -> list[tuple[int, int]]:
    """Frame pairs compared: noise sequences against their first frame, others consecutively.

    ``step`` is ImageNet-P's difficulty (1 = every frame); pairs follow Hendrycks's reference code.
    """
    pairs = []
    for start in range(1 if noise else step):
        prev = start
        for t in range(start + (1 if noise else step), n_frames, 1 if noise else step):
            pairs.append((prev, t))
            if not noise:
                prev = t
    return pairs


def flip_probability(predictions: torch.Tensor | np.ndarray, noise: bool, step: int = 1) -> float:
    """FP = mean over sequences of the fraction of compared frame pairs whose top-1 differs.

    Args:
        predictions: (sequences, frames) top-1 labels.
        noise: noise perturbations (``is_noise_perturbation``) compare every frame with the first
            frame because their frames are independent draws; the others compare consecutive frames.
        step: the difficulty (frame stride), 1 by default.
    """
    preds = np.asarray(predictions)
    pairs = _frame_pairs(preds.shape[1], noise, step)
    if not pairs:
        raise ValueError("a sequence needs at least two frames")
    a, b = zip(*pairs)
    return float((preds[:, list(a)] != preds[:, list(b)]).mean(axis=1).mean())


def _top5_cum() -> np.ndarray:
    return np.cumsum([0, 1, 1, 1, 1, 1])  # g(k) = clip(k - 1, 0, 5) for ranks k = 1..6


def top5_distance_pair(logits_a: torch.Tensor | np.ndarray, logits_b: torch.Tensor | np.ndarray) -> float:
    """Top-5 distance d(τ(x), τ(x')) = Σ_{i≤5} |g(i) − g(σ(i))| with g(k) = clip(k − 1, 0, 5).

    σ(i) is the rank under ``logits_b`` of the class ranked i-th under ``logits_a`` (1-based).
    """
    order_a = np.argsort(-np.asarray(logits_a), kind="stable")
    rank_b = np.empty(len(order_a), dtype=int)
    rank_b[np.argsort(-np.asarray(logits_b), kind="stable")] = np.arange(1, len(order_a) + 1)
    k = min(5, len(order_a))  # fewer than 5 classes: the top-k distance
    sigma = np.minimum(rank_b[order_a[:k]], 6)
    g = _top5_cum()
    return float(np.abs(g[np.arange(k)] - g[sigma - 1]).sum())


def top5_distance(logits: torch.Tensor | np.ndarray, noise: bool, step: int = 1) -> float:
    """T5D of a perturbation: mean over sequences of the mean top-5 distance of compared frame pairs.

    Args:
        logits: (sequences, frames, classes).
    """
    arr = np.asarray(logits)
    pairs = _frame_pairs(arr.shape[1], noise, step)
    per_seq = [np.mean([top5_distance_pair(seq[i], seq[j]) for i, j in pairs]) for seq in arr]
    return float(np.mean(per_seq))


def summarize_perturbations(flip_probs: Mapping[str, float], top5: Mapping[str, float] | None = None,
                            reference_fp: Mapping[str, float] | None = None,
                            reference_t5d: Mapping[str, float] | None = None,
                            reference_name: str | None = None) -> PerturbationSummary:
    """FR_p = FP_p / FP_p^ref, mFR = 100 · mean_p FR_p; mT5D likewise from top-5 distances.

    The AlexNet flip probabilities are not public: pass a reference model's values (computed by
    the same code) or user-supplied ones, and name them.
    """
    out = PerturbationSummary(normalizer=reference_name if reference_fp else None,
                              flip_probability=dict(flip_probs), top5_distance=dict(top5 or {}))
    if reference_fp:
        out.flip_rate = {p: 100 * fp / reference_fp[p] for p, fp in flip_probs.items() if reference_fp.get(p)}
        out.mfr = float(np.mean(list(out.flip_rate.values()))) if out.flip_rate else None
    if reference_t5d and top5:
        out.top5_rate = {p: 100 * d / reference_t5d[p] for p, d in top5.items() if reference_t5d.get(p)}
        out.mt5d = float(np.mean(list(out.top5_rate.values()))) if out.top5_rate else None
    return out


# ----------------------------------------------------------------------------- ImageNet-A / R


def masked_logits(logits: torch.Tensor, class_indices: Sequence[int]) -> torch.Tensor:
    """Keep only the logits of a 200-class subset (in the subset's sorted-wnid order).

    A 1000-way model is evaluated on ImageNet-A/R by an argmax over these columns; labels are the
    subset's own 0..199 indices (ImageFolder order of the sorted wnids).
    """
    if logits.shape[-1] == len(class_indices):
        return logits
    return logits[..., torch.as_tensor(list(class_indices), device=logits.device)]


def subset_top1_correct(logits: torch.Tensor, labels: torch.Tensor,
                        class_indices: Sequence[int]) -> torch.Tensor:
    """Per-sample correctness of the argmax over the subset's logits."""
    return masked_logits(logits, class_indices).argmax(-1) == labels.to(logits.device)
