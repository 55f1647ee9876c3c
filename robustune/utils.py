"""Small shared helpers: per-step generators, devices, the environment record, the cache folder.

Atomic writes and JSON files live in :mod:`robustune.files`."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("robustune")


def step_generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from (seed, *keys): the same step always draws the same numbers,

    so a resumed run reproduces an uninterrupted one without restoring global RNG state.
    """
    value = seed
    for k in keys:
        value = (value * 1_000_003 + int(k) + 1) % (2**63 - 1)
    g = torch.Generator(device=device)
    g.manual_seed(value)
    return g


def resolve_device(device: str = "auto", key: str = "train.device") -> torch.device:
    """``auto`` → cuda when available, else cpu; anything else must be a usable torch device.

    Raises ``ValueError`` naming ``key`` for a name torch does not know (``gpu``) or a device this
    machine does not have (``cuda`` without a visible GPU).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{key}={device!r} is not a torch device; use auto, cpu, cuda, cuda:0 or mps") from None
    available = {"cuda": torch.cuda.is_available,
                 "mps": lambda: torch.backends.mps.is_available()}.get(dev.type, lambda: True)
    if not available():
        raise ValueError(f"{key}={device!r} but this machine has no usable {dev.type.upper()} device; "
                         "use --set train.device=auto (or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{key}={device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_record() -> dict[str, Any]:
    """Versions and hardware, stored with every run and result."""
    from robustune import __version__

    libs = {}
    for name in ("torch", "torchvision", "timm", "open_clip", "numpy", "safetensors"):
        with contextlib.suppress(Exception):
            libs[name] = __import__(name).__version__
    return {
        "robustune": __version__,
        "git_commit": git_commit(Path(__file__).parent),
        "python": platform.python_version(),
        "libraries": libs,
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }


def cache_dir() -> Path:
    """``$ROBUSTUNE_CACHE`` or ``~/.cache/robustune``."""
    root = os.environ.get("ROBUSTUNE_CACHE") or Path.home() / ".cache" / "robustune"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
