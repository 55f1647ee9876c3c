"""File faults named, not lost: digests, one writer per folder, a full disk said in one line.

- :func:`file_sha256` / :func:`tensors_sha256`: digests recorded beside what they describe and
  checked before anything is read back (checkpoints, final weights, evaluation cells).
- :func:`folder_lock`: an exclusive OS lock (``fcntl.flock``) on a run or results folder, so a
  second process on the same folder stops at once naming the holder's pid; the OS releases it
  when the holder exits or is killed.
- :func:`atomic_path` / :func:`write_text_atomic` / :func:`write_json`: a file is replaced whole
  or not at all (temporary file + rename); :func:`read_json`.
- :func:`save_tensors`: safetensors written atomically, a full disk named.
- :func:`disk_full_named`: turns ENOSPC / EDQUOT / EFBIG while writing into one
  :class:`DiskFullError` that names the path, the free space and the space needed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from robustune.errors import DiskFullError, FolderLockedError

if TYPE_CHECKING:
    import torch

LOCK_NAME = ".robustune.lock"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tensors_sha256(state: Mapping[str, "torch.Tensor"]) -> str:
    """Digest of a state dict (names, dtypes, shapes and bytes), independent of the device."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def free_bytes(path: str | os.PathLike) -> int:
    """Free space of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _errno_of(exc: Exception) -> int | None:
    """errno of an OSError, or of a library error that only says "(os error 28)" (safetensors)."""
    if isinstance(exc, OSError):
        return exc.errno
    match = re.search(r"os error (\d+)", str(exc))
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def disk_full_named(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Re-raise a full disk while writing ``path`` as one :class:`DiskFullError` naming it."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        code = _errno_of(exc)
        if code not in _FULL:
            raise
        what = "a file-size limit was hit" if code == errno.EFBIG else "no space left on the device"
        need = f", about {human_bytes(needed)} needed" if needed else ""
        raise DiskFullError(
            code,
            f"{what} while writing {str(path)!r} ({human_bytes(free_bytes(path))} free{need}). "
            "Nothing earlier was overwritten: free some space (or move the folder) and rerun "
            "(--resume for a training)",
        ) from exc


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` for the block; a second holder fails at once.

    The lock is ``flock`` on ``folder/.robustune.lock`` (which records the holder's pid), so it
    is released when the process exits, crashes or is killed (no stale lock to delete).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderLockedError(
                f"{str(folder)!r} is in use by another robustune process (pid {holder}); wait for it "
                f"to finish or stop it, or choose another {what} (nothing was changed)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def contiguous_cpu(state: "Mapping[str, torch.Tensor]") -> "dict[str, torch.Tensor]":
    """Detached, contiguous CPU copies (what safetensors can write)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_tensors(path: str | os.PathLike, tensors: "Mapping[str, torch.Tensor]", metadata: dict | None = None) -> None:
    """safetensors, atomically (temporary file + rename); a full disk is a named DiskFullError."""
    from safetensors.torch import save_file

    tensors = contiguous_cpu(tensors)
    with disk_full_named(path, sum(t.numel() * t.element_size() for t in tensors.values())):
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)


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
    """Write ``text`` atomically; a full disk is a :class:`DiskFullError` naming ``path``."""
    with disk_full_named(path, len(text.encode())):
        with atomic_path(path) as tmp:
            tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    import numpy as np
    import torch

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
