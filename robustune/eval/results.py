"""Evaluation results as data: one :class:`Cell` per measured number, one ``results.json`` per model.

``EvalResults.store`` holds every cell measured into the file, each under (key, fingerprint of
what determines its number): cells of the same key measured on other inputs (e.g. a 50-image
subset and the whole split) coexist. ``EvalResults.cells`` is the view the reports and summaries
read: per key the cell with the most images (the latest of equals); its ``n`` says which.
A summary cell (mCE, mPC, ...) is derived from the view: its fingerprint is ``summary:<suite key>``
and a recomputed summary replaces every cell of the previous one.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
    # per-image outcomes in the order of the evaluated set (1 = correct, or robust for an attack
    # cell), packed 8 per byte and base64-encoded: encode_outcomes / decode_outcomes (``n`` images)
    outcomes: str | None = None

    @classmethod
    def from_outcomes(cls, key: str, suite: str, metric: str, correct: torch.Tensor,
                      **details: Any) -> "Cell":
        n = int(correct.numel())
        k = int(correct.sum().item())
        return cls(key=key, suite=suite, metric=metric, value=k / max(n, 1), n=n,
                   ci95=wilson_interval(k, n), details=details, outcomes=encode_outcomes(correct))

    def outcome_array(self) -> np.ndarray | None:
        """The per-image outcomes as a boolean array of length ``n`` (None when not stored)."""
        return None if self.outcomes is None or self.n is None else decode_outcomes(self.outcomes, self.n)


def encode_outcomes(correct: torch.Tensor | np.ndarray) -> str:
    """Booleans → ``np.packbits`` bytes → base64 text (10,000 images take 1,668 characters)."""
    bits = np.asarray(correct.cpu() if torch.is_tensor(correct) else correct).astype(bool).ravel()
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def decode_outcomes(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`encode_outcomes` for ``n`` images."""
    packed = np.frombuffer(base64.b64decode(text), dtype=np.uint8)
    if packed.size != (n + 7) // 8:
        raise ValueError(f"stored outcomes hold {packed.size * 8} bits, not the {n} images of the cell")
    return np.unpackbits(packed)[:n].astype(bool)


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
    store: list[Cell] = field(default_factory=list)  # every cell measured (the view is ``cells``)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalResults":
        def cell(v: dict[str, Any]) -> Cell:
            return Cell(**{**v, "ci95": tuple(v["ci95"]) if v.get("ci95") else None})

        cells = {k: cell(v) for k, v in data.get("cells", {}).items()}
        out = cls(model=data["model"], dataset=data["dataset"], seed=data["seed"],
                  environment=data.get("environment", {}), cells=cells, checks=data.get("checks", []),
                  inputs=data.get("inputs", {}), store=[cell(v) for v in data.get("store", [])])
        if "store" not in data:  # a results.json of an older robustune: its cells are the store
            out.store = list(cells.values())
        return out

    def find(self, key: str, fingerprint: str) -> Cell | None:
        """The stored cell ``key`` measured on the inputs of ``fingerprint``, if any."""
        return next((c for c in self.store if c.key == key and c.fingerprint == fingerprint), None)

    def add(self, cell: Cell) -> None:
        """Store ``cell`` (replacing the same key and fingerprint) and update the view."""
        self.store = [c for c in self.store if (c.key, c.fingerprint) != (cell.key, cell.fingerprint)]
        self.store.append(cell)
        self.update_view()

    def replace_summary(self, fingerprint: str, cells: list[Cell]) -> None:
        """Drop the cells of summary ``fingerprint`` (``summary:<suite key>``), store ``cells``."""
        old = {c.key for c in self.store if c.fingerprint == fingerprint}
        self.store = [c for c in self.store if c.fingerprint != fingerprint]
        for c in cells:
            c.fingerprint = fingerprint
            self.store = [s for s in self.store if s.key != c.key]
            self.store.append(c)
        self.cells = {k: v for k, v in self.cells.items() if k not in old}
        self.update_view()

    def update_view(self) -> None:
        """``cells``: per key the stored cell with the most images, the latest of equals."""
        view: dict[str, Cell] = {}
        for c in self.store:
            best = view.get(c.key)
            if best is None or (c.n or 0) >= (best.n or 0):
                view[c.key] = c
        self.cells = {k: view[k] for k in sorted(view, key=list(view).index)}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "EvalResults":
        return cls.from_dict(read_json(path))

    def value(self, key: str) -> float:
        return self.cells[key].value


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", key)


def per_sample_path(out_dir: Path, key: str, fingerprint: str | None = None) -> Path:
    """``per_sample/<key>@<fingerprint>.safetensors`` (``<key>.safetensors`` without one)."""
    tag = f"@{fingerprint}" if fingerprint else ""
    return Path(out_dir) / "per_sample" / f"{safe_name(key)}{tag}.safetensors"


def save_per_sample(out_dir: Path, key: str, fingerprint: str | None = None, **tensors: torch.Tensor) -> Path:
    """Per-sample outcomes of a cell (e.g. ``correct``) as safetensors beside results.json."""
    from robustune.files import save_tensors

    path = per_sample_path(out_dir, key, fingerprint)
    save_tensors(path, {k: v.to(torch.uint8) if v.dtype == torch.bool else v for k, v in tensors.items()})
    return path


def load_per_sample(out_dir: Path, key: str) -> dict[str, torch.Tensor]:
    """The per-sample outcomes of the cell ``key`` of the view (the one with the most images)."""
    from safetensors.torch import load_file

    fingerprint = None
    if (Path(out_dir) / "results.json").is_file():
        cell = EvalResults.load(Path(out_dir) / "results.json").cells.get(key)
        fingerprint = cell.fingerprint if cell is not None else None
    path = per_sample_path(out_dir, key, fingerprint)
    if not path.is_file():
        path = per_sample_path(out_dir, key)
    return load_file(str(path))
