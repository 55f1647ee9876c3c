"""Clean predictions and top-1 accuracy."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from robustune.attacks import eval_mode
from robustune.data.loading import LoaderOptions, device_batches
from robustune.precision import autocast


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256,
            device: torch.device | str = "cpu", *, loader: LoaderOptions | None = None,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, true labels) over ``dataset``, model in eval mode (flag restored).

    Forward passes run under the precision policy's autocast (:mod:`robustune.precision`); batches
    come from :func:`robustune.data.loading.device_batches` (workers, uint8 transport).
    Under torch.distributed each rank predicts its own shard and the results are gathered, every
    image exactly once, in dataset order.
    """
    from torch.utils.data import Subset

    from robustune import distributed as dist

    indices = dist.shard_indices(len(dataset))
    part = Subset(dataset, indices) if dist.is_distributed() else dataset
    preds, labels = [], []
    with eval_mode(model), autocast(precision, device):
        for x, y in device_batches(part, batch_size, device, loader):
            preds.append(model(x).argmax(1).cpu())
            labels.append(torch.as_tensor(y))
    pred, label = torch.cat(preds), torch.cat(labels)
    return dist.gather_by_index(len(dataset), indices, pred, label)


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256,
             device: torch.device | str = "cpu", *, loader: LoaderOptions | None = None,
             precision: str = "fp32") -> float:
    pred, y = predict(model, dataset, batch_size, device, loader=loader, precision=precision)
    return (pred == y).float().mean().item()
