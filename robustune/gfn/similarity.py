"""Class similarity from a frozen model (GFN Sec. 3.1, Eq. 4).

z_c = mean over class-c images of the L2-normalised pre-logit feature; M[i, j] = cos(z_i, z_j);
rank_c(p) = position of p among the other classes sorted by M[c, ·] descending (nearest = 1).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from robustune.attacks import eval_mode
from robustune.data import build_loader
from robustune.data.sampling import few_shot_indices
from robustune.data.splits import targets_of
from robustune.files import write_json

log = logging.getLogger(__name__)


def clamp_k(k: int, num_classes: int) -> int:
    """k clamped to C − 1 (with a warning): a class has only C − 1 neighbours."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    if k > num_classes - 1:
        log.warning("k = %d exceeds the %d other classes; using k = %d", k, num_classes - 1,
                    num_classes - 1)
        return num_classes - 1
    return k


def _class_names(dataset: Dataset, indices: list[int]) -> str:
    """``'cat' (3), 'dog' (5)`` for the first ten ``indices``, names from the dataset when it has them."""
    from robustune.data.splits import classes_of

    try:
        names = classes_of(dataset)
    except AttributeError:
        names = []
    shown = [f"{names[i]!r} ({i})" if i < len(names) else str(i) for i in indices[:10]]
    return ", ".join(shown) + (f" and {len(indices) - 10} more" if len(indices) > 10 else "")


@torch.no_grad()
def class_embeddings(model: nn.Module, dataset: Dataset, num_classes: int,
                     max_per_class: int | None = 100, batch_size: int = 256,
                     device: torch.device | str = "cpu", seed: int = 0) -> torch.Tensor:
    """(C, D) mean of L2-normalised pre-logit features per class (eval mode, frozen model)."""
    if max_per_class:
        dataset = Subset(dataset, few_shot_indices(targets_of(dataset), max_per_class, seed))
    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes, device=device)
    with eval_mode(model):
        for x, y in build_loader(dataset, batch_size):
            feats = F.normalize(model.features(x.to(device)).float(), dim=1)
            y = torch.as_tensor(y, device=device)
            if sums is None:
                sums = torch.zeros(num_classes, feats.shape[1], device=device)
            sums.index_add_(0, y, feats)
            counts.index_add_(0, y, torch.ones_like(y, dtype=counts.dtype))
    if sums is None or bool((counts == 0).any()):
        missing = list(range(num_classes)) if sums is None else (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"no training images for class(es) {_class_names(dataset, missing)}: class "
                         "similarity needs every class (check data.train_subset / data.shots and empty "
                         "class folders)")
    return sums / counts[:, None]


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    z = F.normalize(vectors.float(), dim=1)
    return z @ z.T


def class_similarity(model: nn.Module, dataset: Dataset | None = None, num_classes: int | None = None,
                     source: str = "features", **kwargs) -> torch.Tensor:
    """Cosine similarity matrix M (C, C) from ``features`` (Eq. 4) or the ``head_weights`` proxy."""
    if source == "head_weights":
        return cosine_matrix(model.head_weights().detach())
    if source != "features":
        raise ValueError(f"unknown similarity_source {source!r}; valid: features, head_weights")
    if dataset is None:
        raise ValueError("similarity_source=features needs the training set")
    n = num_classes or getattr(model, "num_classes")
    return cosine_matrix(class_embeddings(model, dataset, n, **kwargs))


def neighbor_ranks(sim: torch.Tensor) -> torch.Tensor:
    """ranks[c, p] = rank of class p for true class c: 0 for p = c, 1 for the most similar other."""
    masked = sim.clone().float()
    masked.fill_diagonal_(float("inf"))  # self first, then descending similarity
    order = masked.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(sim.shape[0], device=sim.device).expand_as(order).contiguous())
    return ranks


def neighbor_table(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """(C, k) class indices of ranks 1..k for each class: N_k(c) in order."""
    order = ranks.argsort(dim=1)
    return order[:, 1:k + 1]


@dataclass
class ClassSimilarity:
    """M, its rank table and the class names; saved with a run."""

    matrix: torch.Tensor
    ranks: torch.Tensor
    classes: list[str]

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor, classes: list[str]) -> "ClassSimilarity":
        return cls(matrix, neighbor_ranks(matrix), list(classes))

    def save(self, run_dir: str | os.PathLike, stem: str = "similarity") -> Path:
        from robustune.files import save_tensors

        run_dir = Path(run_dir)
        save_tensors(run_dir / f"{stem}.safetensors", {"matrix": self.matrix, "ranks": self.ranks})
        table = neighbor_table(self.ranks, self.ranks.shape[0] - 1).tolist()
        write_json(run_dir / f"{stem}.json", {
            "classes": self.classes,
            "neighbors_by_rank": {self.classes[c]: [self.classes[j] for j in row]
                                  for c, row in enumerate(table)},
        })
        return run_dir / f"{stem}.safetensors"

    @classmethod
    def load(cls, run_dir: str | os.PathLike, stem: str = "similarity") -> "ClassSimilarity":
        from safetensors.torch import load_file

        from robustune.files import read_json

        run_dir = Path(run_dir)
        t = load_file(str(run_dir / f"{stem}.safetensors"))
        return cls(t["matrix"], t["ranks"], read_json(run_dir / f"{stem}.json")["classes"])
