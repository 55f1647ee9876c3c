"""Checkpoints: one folder per epoch, written atomically, the last N kept.

``<run>/checkpoints/epoch_0003/`` holds ``model.safetensors`` (the method's state),
``optimizer.safetensors`` (optimizer tensors) and ``state.json`` (epoch, step, scheduler,
optimizer skeleton, RNG states and the sha256 of every other file of the checkpoint). The folder
is written under a temporary name and renamed, ``state.json`` last, so a crash or a full disk never
leaves a half checkpoint, and the previous one is untouched. :func:`load_checkpoint` checks the
digests first: a flipped byte or a truncated file is a :class:`CheckpointCorruptError` naming the
file, never weights silently read from garbage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robustune.errors import CorruptFileError
from robustune.files import contiguous_cpu, current_umask, disk_full_named, file_sha256, write_json

log = logging.getLogger(__name__)

DIGESTED = ("model.safetensors", "optimizer.safetensors")


class CheckpointCorruptError(CorruptFileError):
    """A checkpoint file is truncated, corrupted or does not match its recorded digest."""


def non_finite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, v in tensors.items()
            if torch.is_floating_point(v) and v.numel() and not bool(torch.isfinite(v).all())]


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


def save_checkpoint(run_dir: Path, epoch: int, step: int, model_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict[str, Any] | None = None,
                    keep: int = 2) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    final = ckpt_root / f"epoch_{epoch:04d}"
    model_tensors = contiguous_cpu(model_state)
    opt_tensors, opt_skel = _flatten_optimizer(optimizer.state_dict())
    needed = sum(t.numel() * t.element_size() for d in (model_tensors, opt_tensors) for t in d.values())
    with disk_full_named(final, needed):
        ckpt_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=ckpt_root))
        try:
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; folders follow the umask
            _write_checkpoint(tmp, final, model_tensors, opt_tensors, {
                "epoch": epoch,
                "step": step,
                "optimizer": opt_skel,
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": {"torch": torch.get_rng_state().tolist()},
                **(extra or {}),
            })
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_checkpoint(tmp: Path, final: Path, model_tensors: dict[str, torch.Tensor],
                      opt_tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Tensors first, then ``state.json`` with their digests (atomically), then the rename."""
    save_file(model_tensors, str(tmp / "model.safetensors"))
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    for name in DIGESTED:
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    state["sha256"] = {name: file_sha256(tmp / name) for name in DIGESTED}
    write_json(tmp / "state.json", state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch_")
                  and (p / "state.json").is_file())


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def read_state(path: Path) -> dict[str, Any]:
    """``state.json`` of checkpoint ``path``; unreadable → :class:`CheckpointCorruptError`."""
    file = Path(path) / "state.json"
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorruptError(f"{file} is truncated or not JSON ({exc})") from exc
    if not isinstance(state, dict) or not {"epoch", "step", "optimizer"} <= set(state):
        raise CheckpointCorruptError(f"{file} is not a robustune checkpoint state (keys missing)")
    return state


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file of checkpoint ``path`` against the digests in its ``state.json``."""
    path = Path(path)
    state = read_state(path)
    digests = state.get("sha256")
    if not digests:
        log.warning("%s has no file digests (written by an older robustune): not verified", path)
        return state
    for name, digest in digests.items():
        file = path / name
        if not file.is_file():
            raise CheckpointCorruptError(f"{file} is missing")
        if file_sha256(file) != digest:
            raise CheckpointCorruptError(
                f"{file} does not match the sha256 recorded in state.json (truncated or corrupted)")
    return state


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except Exception as exc:  # SafetensorError, a pickle renamed .safetensors, a truncated file
        raise CheckpointCorruptError(f"{file} is not a readable safetensors file "
                                     f"({exc.__class__.__name__}: {exc})") from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A verified checkpoint: state.json + model and optimizer tensors.

    Raises:
        CheckpointCorruptError: naming the file that is missing, truncated or fails its digest.
    """
    path = Path(path)
    state = verify_checkpoint(path)
    state["model"] = _load_tensors(path / "model.safetensors")
    try:
        state["optimizer"] = _unflatten_optimizer(_load_tensors(path / "optimizer.safetensors"),
                                                  state["optimizer"])
    except KeyError as exc:
        raise CheckpointCorruptError(f"{path / 'optimizer.safetensors'} lacks tensor {exc} "
                                     "named in state.json") from exc
    return state
