"""Small shared helpers: atomic file writes, JSON, seeding, devices, run records."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger("robustune")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    A crash or a full disk mid-write leaves the previous file untouched and no half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; files follow the umask
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically; a full disk is a :class:`robustune.files.DiskFullError` naming ``path``."""
    from robustune.files import disk_full_named

    with disk_full_named(path, len(text.encode())):
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


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
