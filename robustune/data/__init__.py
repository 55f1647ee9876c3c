"""Datasets (images are float tensors in [0,1], CHW), the dataset registry and samplers."""

from robustune.data.registry import DATASETS, create_dataset, list_datasets, register_dataset
from robustune.data.sampling import class_balanced_subset, few_shot_indices
from robustune.data.splits import DataSplits, IndexedDataset, build_loader, load_splits
from robustune.data.transforms import build_transform

# Import for registration side effects.
from robustune.data import digits as _digits  # noqa: F401,E402
from robustune.data import digits_pairs as _digits_pairs  # noqa: F401,E402
from robustune.data import folder as _folder  # noqa: F401,E402
from robustune.data import torchvision_sets as _tv  # noqa: F401,E402
from robustune.data import coop as _coop  # noqa: F401,E402
from robustune.data import fewshot as _fewshot  # noqa: F401,E402
from robustune.data import robustness_sets as _robustness_sets  # noqa: F401,E402
from robustune.data import detection as _detection  # noqa: F401,E402  (digits_det)
from robustune.data import detection_formats as _det_formats  # noqa: F401,E402  (coco, voc, rtts, exdark)

__all__ = [
    "IndexedDataset",
    "DATASETS",
    "DataSplits",
    "build_loader",
    "build_transform",
    "class_balanced_subset",
    "create_dataset",
    "few_shot_indices",
    "list_datasets",
    "load_splits",
    "register_dataset",
]
