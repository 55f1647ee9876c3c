"""Clean predictions and top-1 accuracy."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from robustune.attacks import eval_mode
from robustune.data.loading import LoaderOptions
from robustune.precision import autocast


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int = 256,
            device: torch.device | str = "cpu", *, loader: LoaderOptions | None = None,
            precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted labels, true labels) over ``dataset``, model in eval mode (flag restored).

    Forward passes run under the precision policy's autocast (:mod:`robustune.precision`); batches
    come from :func:`robustune.data.loading.device_batches` (workers, uint8 transport). Under
    torch.distributed the batches are dealt to the ranks (:mod:`robustune.eval.sharding`) and
    every rank returns the whole result, every image exactly once, in dataset order.
    """
    from robustune.eval.sharding import map_batches

    def work(batch):
        x, y = batch
        return model(x).argmax(1).cpu(), torch.as_tensor(y)

    with eval_mode(model), autocast(precision, device):
        parts = map_batches(dataset, batch_size, work, device=device, loader=loader)
    if not parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat([p for p, _ in parts]), torch.cat([y for _, y in parts])


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 256,
             device: torch.device | str = "cpu", *, loader: LoaderOptions | None = None,
             precision: str = "fp32") -> float:
    pred, y = predict(model, dataset, batch_size, device, loader=loader, precision=precision)
    return (pred == y).float().mean().item()
