"""Evaluation results as data: one :class:`Cell` per measured number, one ``results.json`` per model."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustune.eval.stats import wilson_interval
from robustune.files import read_json, write_json


@dataclass
class Cell:
    """One measured number with its name and everything needed to interpret it."""

    key: str  # e.g. "clean", "pgd/Linf/eps=8/255/steps=10"
    suite: str
    metric: str  # e.g. "top1_accuracy", "robust_accuracy", "mCE", "mean_corruption_accuracy"
    value: float
    n: int | None = None
    ci95: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None  # key of EvalResults.inputs: what this number was measured on

    @classmethod
    def from_outcomes(cls, key: str, suite: str, metric: str, correct: torch.Tensor,
                      **details: Any) -> "Cell":
        n = int(correct.numel())
        k = int(correct.sum().item())
        return cls(key=key, suite=suite, metric=metric, value=k / max(n, 1), n=n,
                   ci95=wilson_interval(k, n), details=details)


@dataclass
class EvalResults:
    """Everything ``robustune eval`` measured for one model."""

    model: dict[str, Any]
    dataset: dict[str, Any]
    seed: int
    environment: dict[str, Any]
    cells: dict[str, Cell] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # fingerprint → inputs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResults":
        cells = {k: Cell(**{**v, "ci95": tuple(v["ci95"]) if v.get("ci95") else None})
                 for k, v in data.get("cells", {}).items()}
        return cls(model=data["model"], dataset=data["dataset"], seed=data["seed"],
                   environment=data.get("environment", {}), cells=cells,
                   checks=data.get("checks", []), inputs=data.get("inputs", {}))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "EvalResults":
        return cls.from_dict(read_json(path))

    def value(self, key: str) -> float:
        return self.cells[key].value


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


def save_per_sample(out_dir: Path, key: str, **tensors: torch.Tensor) -> Path:
    """Per-sample outcomes of a cell (e.g. ``correct``) as safetensors beside results.json."""
    from robustune.files import save_tensors

    path = Path(out_dir) / "per_sample" / f"{safe_name(key)}.safetensors"
    save_tensors(path, {k: v.to(torch.uint8) if v.dtype == torch.bool else v for k, v in tensors.items()})
    return path


def load_per_sample(out_dir: Path, key: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(out_dir) / "per_sample" / f"{safe_name(key)}.safetensors"))
