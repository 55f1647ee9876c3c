"""GFN — Gain From Neighbors (neighbour-class perturbation fine-tuning).

Paper: "Gain from Neighbors: Boosting Model Robustness in the Wild via Adversarial Perturbations
Toward Neighboring Classes". Specification: ``docs/gfn.md``.
"""

from robustune.gfn.similarity import (
    ClassSimilarity,
    class_embeddings,
    class_similarity,
    clamp_k,
    neighbor_ranks,
    neighbor_table,
)
from robustune.gfn.perturbation import NeighborPerturbation, pixel_step, sample_neighbor_targets

__all__ = [
    "ClassSimilarity", "NeighborPerturbation", "clamp_k", "class_embeddings", "class_similarity",
    "neighbor_ranks", "neighbor_table", "pixel_step", "sample_neighbor_targets",
]
