"""Common corruptions (Hendrycks & Dietterich 2019): a registry, seeded per-image corruption and
resumable parallel generation of corrupted datasets in the ImageNet-C folder layout."""

from robustune.corruptions.datasets import corrupt_dataset, ensure_corrupted_dataset
from robustune.corruptions.generate import (
    GenerationConfig,
    GenerationReport,
    cell_seed,
    generate_corruptions,
    read_manifest,
)
from robustune.corruptions.registry import (
    CORRUPTIONS,
    SUBSETS,
    corrupt_image,
    ensure_min_size,
    list_corruptions,
    register_corruption,
    resolve_corruptions,
    resolve_severities,
)

__all__ = [
    "CORRUPTIONS", "GenerationConfig", "GenerationReport", "SUBSETS", "cell_seed", "corrupt_dataset",
    "corrupt_image", "ensure_corrupted_dataset", "ensure_min_size", "generate_corruptions",
    "list_corruptions", "read_manifest", "register_corruption", "resolve_corruptions",
    "resolve_severities",
]
