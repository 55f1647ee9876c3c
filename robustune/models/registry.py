"""The registry of project models: a builder ``fn(num_classes, **kwargs)`` and its data config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from robustune.registry import Registry


@dataclass
class ModelEntry:
    fn: Callable[..., nn.Module]
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    input_size: tuple[int, int, int] = (3, 32, 32)
    extra: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, **meta: Any) -> Callable:
    """Register a project model builder ``fn(num_classes, **kwargs) -> nn.Module`` with its data config."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelEntry(fn=fn, **meta))
        return fn

    return deco


def list_models(pattern: str = "*", include_timm: bool = False) -> list[str]:
    names = MODELS.list(pattern)
    if include_timm:
        import timm

        names += timm.list_models(pattern)
    return names
