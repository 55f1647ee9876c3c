"""Error-rank histogram of corruption-induced mistakes (GFN paper Sec. 3.1, Fig. 2).

For the images a model classifies correctly when clean and wrongly when corrupted, the wrong
class's rank k in the true class's similarity order (k = 1: the most similar other class). GFN's
observation: these mistakes concentrate on small k, i.e. on neighbouring classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ErrorRankHistogram:
    corruption: str
    severity: int | None
    num_classes: int
    counts: list[int]  # counts[k - 1]: mistakes whose predicted class has rank k, k = 1..C-1
    n_clean_correct: int
    n_mistakes: int
    model: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fractions(self) -> list[float]:
        return [c / self.n_mistakes if self.n_mistakes else 0.0 for c in self.counts]

    @property
    def mean_rank(self) -> float | None:
        if not self.n_mistakes:
            return None
        return sum((k + 1) * c for k, c in enumerate(self.counts)) / self.n_mistakes

    def top_k_fraction(self, k: int) -> float:
        """Share of corruption-induced mistakes that land on one of the k nearest classes."""
        return sum(self.counts[:k]) / self.n_mistakes if self.n_mistakes else 0.0


def corruption_error_ranks(clean_pred: torch.Tensor, corrupt_pred: torch.Tensor, labels: torch.Tensor,
                           ranks: torch.Tensor, corruption: str = "", severity: int | None = None,
                           model: str = "") -> ErrorRankHistogram:
    """Histogram of ranks[y, ŷ_corrupted] over images right when clean and wrong when corrupted.

    Args:
        clean_pred, corrupt_pred, labels: (N,) aligned per source image.
        ranks: (C, C) with ranks[c, p] the rank of class p for true class c (self 0, nearest 1),
            as returned by :func:`robustune.gfn.similarity.neighbor_ranks`.
    """
    if not (clean_pred.shape == corrupt_pred.shape == labels.shape):
        raise ValueError("clean predictions, corrupted predictions and labels must be aligned (N,) tensors")
    num_classes = int(ranks.shape[0])
    clean_ok = clean_pred == labels
    induced = clean_ok & (corrupt_pred != labels)
    k = ranks[labels[induced].long(), corrupt_pred[induced].long()]
    counts = torch.bincount(k, minlength=num_classes)[1:num_classes]
    return ErrorRankHistogram(corruption, severity, num_classes, counts.tolist(), int(clean_ok.sum()),
                              int(induced.sum()), model)


def summarize_error_ranks(hists: list[ErrorRankHistogram], ks: tuple[int, ...] = (1, 5, 20)) -> dict:
    """Per model: the share of mistakes in ranks 1..k, pooled over corruptions, vs. uniform.

    Uniform expectation: a mistake landing on any of the C − 1 wrong classes alike puts
    k / (C − 1) of the mistakes in ranks 1..k. Per corruption as well (each with its n).
    """
    out: dict = {}
    for model in dict.fromkeys(h.model for h in hists):
        own = [h for h in hists if h.model == model]
        counts = [sum(c) for c in zip(*(h.counts for h in own))]
        pooled = ErrorRankHistogram("all", own[0].severity, own[0].num_classes, counts,
                                    sum(h.n_clean_correct for h in own), sum(h.n_mistakes for h in own), model)
        wrong = pooled.num_classes - 1
        out[model] = {
            "num_classes": pooled.num_classes, "n_mistakes": pooled.n_mistakes,
            "mean_rank": pooled.mean_rank, "uniform_mean_rank": (wrong + 1) / 2,
            "top_k": {str(k): pooled.top_k_fraction(k) for k in ks},
            "uniform_top_k": {str(k): min(k, wrong) / wrong for k in ks},
            "per_corruption": {h.corruption: {"n_mistakes": h.n_mistakes, "mean_rank": h.mean_rank,
                                              "top_k": {str(k): h.top_k_fraction(k) for k in ks}}
                               for h in own},
        }
    return out
