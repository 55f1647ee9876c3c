"""Checkpoints: one folder per epoch, written atomically, the last N kept.

``<run>/checkpoints/epoch_0003/`` holds ``model.safetensors`` (the method's state),
``optimizer.safetensors`` (optimizer tensors) and ``state.json`` (epoch, step, scheduler,
optimizer skeleton, RNG states). The folder is written under a temporary name and renamed, so a
crash or a full disk never leaves a half checkpoint, and the previous one is untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robustune.utils import read_json, write_json

log = logging.getLogger(__name__)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        skel = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
                skel[key] = "__tensor__"
            else:
                skel[key] = value
        skeleton["state"][str(idx)] = skel
    return tensors, skeleton


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], skeleton: dict[str, Any]) -> dict[str, Any]:
    state = {}
    for idx, entry in skeleton["state"].items():
        state[int(idx)] = {k: tensors[f"{idx}.{k}"] if v == "__tensor__" else v for k, v in entry.items()}
    return {"state": state, "param_groups": skeleton["param_groups"]}


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors, atomically (temporary file + rename)."""
    from robustune.utils import atomic_path

    with atomic_path(path) as tmp:
        save_file(_contiguous(tensors), str(tmp), metadata=metadata)


def save_checkpoint(run_dir: Path, epoch: int, step: int, model_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict[str, Any] | None = None,
                    keep: int = 2) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"epoch_{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=ckpt_root))
    try:
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        opt_tensors, opt_skel = _flatten_optimizer(optimizer.state_dict())
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        state = {
            "epoch": epoch,
            "step": step,
            "optimizer": opt_skel,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": {"torch": torch.get_rng_state().tolist()},
            **(extra or {}),
        }
        write_json(tmp / "state.json", state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch_")
                  and (p / "state.json").is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = read_json(path / "state.json")
    state["model"] = load_file(str(path / "model.safetensors"))
    state["optimizer"] = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")),
                                              state["optimizer"])
    return state
