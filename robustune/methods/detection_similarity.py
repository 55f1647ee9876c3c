"""GFN-det's class similarity from the detector's backbone (our reading of GFN Eq. 4 for detection).

z_c = mean over ground-truth objects of class c of the L2-normalised feature of the object's box:
RoIAlign (2×2 bins, averaged) on the trunk's last map — the ViT's last block, a CNN's last stage —
of the frozen starting detector, eval mode, one image at a time (images may differ in size).
Objects are taken in dataset order until each class has ``max_per_class`` (crowd boxes skipped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from robustune.attacks import eval_mode


def trunk_map(backbone: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(1, D, h, w): the trunk's last feature map of one [0,1] image."""
    z = backbone.normalizer(image[None])
    if backbone.hierarchical:
        return backbone.trunk(z)[-1]
    return backbone._single_map(z)


@torch.no_grad()
def box_feature_embeddings(detector: nn.Module, dataset: Dataset, num_classes: int,
                           max_per_class: int | None = 100, device: torch.device | str = "cpu",
                           max_images: int | None = None) -> torch.Tensor:
    """(C, D) class means of L2-normalised GT-box features; every class needs at least one object.

    ``max_images`` caps the images scanned (COCO: rare classes would otherwise make it scan all).
    """
    from torchvision.ops import roi_align

    sums, counts = None, torch.zeros(num_classes)
    cap = max_per_class or float("inf")
    with eval_mode(detector):
        for i in range(min(len(dataset), max_images or len(dataset))):
            if bool((counts >= cap).all()):
                break
            image, target = dataset[i]
            keep = (target["iscrowd"] == 0) & (counts[target["labels"]] < cap)
            if not bool(keep.any()):
                continue
            fmap = trunk_map(detector.backbone, image.to(device))
            boxes = target["boxes"][keep].to(device)
            pooled = roi_align(fmap, [boxes], output_size=2, spatial_scale=fmap.shape[-1] / image.shape[-1],
                               sampling_ratio=2, aligned=True).mean((2, 3))
            feats = F.normalize(pooled.float(), dim=1).cpu()
            if sums is None:
                sums = torch.zeros(num_classes, feats.shape[1])
            labels = target["labels"][keep]
            sums.index_add_(0, labels, feats)
            counts.index_add_(0, labels, torch.ones(len(labels)))
    if sums is None or bool((counts == 0).any()):
        missing = list(range(num_classes)) if sums is None else (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"no ground-truth objects of classes {missing[:10]} in the training set: "
                         "the feature similarity needs every class (or use similarity_source=head_weights)")
    return sums / counts[:, None]
