"""File faults named, not lost: digests, one writer per folder, a full disk said in one line.

- :func:`file_sha256` / :func:`tensors_sha256`: digests recorded beside what they describe and
  checked before anything is read back (checkpoints, final weights, evaluation cells).
- :func:`folder_lock`: one process per run or results folder, a second stops at once naming the
  holder's pid and host; built on :class:`FileLock`.
- :class:`FileLock` / :func:`claim`: lock files created with O_EXCL holding host, pid and a
  heartbeat time, held across machines sharing a network file system; a lock whose holder is gone
  (same host: pid dead; another host: heartbeat older than :data:`STALE_SECONDS`) is taken over
  with a warning naming it.
- :func:`atomic_path` / :func:`write_text_atomic` / :func:`write_json`: a file is replaced whole
  or not at all (temporary file + rename); :func:`read_json`.
- :func:`save_tensors`: safetensors written atomically, a full disk named.
- :func:`disk_full_named`: turns ENOSPC / EDQUOT / EFBIG while writing into one
  :class:`DiskFullError` that names the path, the free space and the space needed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from robustune.errors import DiskFullError, FolderLockedError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

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
    """Hold the lock of ``folder`` for the block; a second holder fails at once.

    The lock is the lock file ``folder/.robustune.lock`` (a :class:`FileLock`): it holds across
    machines sharing the folder over a network file system, and a lock left by a killed holder is
    taken over with a warning (same host: its pid is gone; another host: its heartbeat is older
    than :data:`STALE_SECONDS`).

    Raises:
        FolderLockedError: another live process holds it; the message names its pid and host.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, what=what)
    if not lock.acquire():
        raise FolderLockedError(
            f"{str(folder)!r} is in use by another robustune process ({lock.describe_holder()}); wait "
            f"for it to finish or stop it, or choose another {what} (nothing was changed)")
    key = folder.resolve()
    _HELD[key] = lock
    try:
        yield lock.path
    finally:
        _HELD.pop(key, None)
        lock.release()


_HELD: dict[Path, "FileLock"] = {}  # folder → the lock this process holds on it (folder_lock)


def check_folder_lock(folder: str | os.PathLike) -> None:
    """Before a write: raise :class:`LockLostError` if this process's lock on ``folder`` was taken
    over (it was silent longer than the stale timeout). No-op when this process holds none."""
    lock = _HELD.get(Path(folder).resolve())
    if lock is not None:
        lock.check()


# ---- lock files that hold across machines -------------------------------------------------------

HEARTBEAT_SECONDS = float(os.environ.get("ROBUSTUNE_LOCK_HEARTBEAT", "20"))
STALE_SECONDS = float(os.environ.get("ROBUSTUNE_LOCK_STALE", "180"))


class LockLostError(RuntimeError):
    """Our lock file was taken over (we were silent longer than the stale timeout): stop writing."""


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` (Linux ``/proc``, clock ticks since boot): tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return start is None or now is None or now == start


class FileLock:
    """An exclusive lock file: ``acquire`` / ``release`` (or ``with``), ``check`` before writing.

    Created atomically with ``O_CREAT | O_EXCL`` (atomic on local disks and NFSv3+), it records
    ``host``, ``pid``, the pid's start time, a random ``token`` and a ``heartbeat`` time that a
    daemon thread rewrites every :data:`HEARTBEAT_SECONDS` (atomically: temporary file + rename).
    A lock is *stale* when its holder is gone: same host and the pid is dead (or reused); another
    host and the heartbeat (or the file's mtime, whichever is newer) is older than ``stale_after``
    seconds — clocks of the machines are assumed to agree within that. A stale lock is taken over
    with a warning naming it; takers serialise on ``<lock>.break`` (itself O_EXCL), so two takers
    never both win. A holder frozen longer than ``stale_after`` loses its lock: its heartbeat stops
    and :meth:`check` raises :class:`LockLostError`, so it writes nothing more.
    """

    def __init__(self, path: str | os.PathLike, what: str = "lock", stale_after: float | None = None,
                 heartbeat: float | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.stale_after = STALE_SECONDS if stale_after is None else stale_after
        self.heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        self.token: str | None = None
        self.holder: dict | None = None  # the other holder seen by the last failed acquire
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # -- reading ---------------------------------------------------------------------------------
    def read(self) -> dict | None:
        """The lock file's record (None: no lock file; ``{}``: unreadable or half written)."""
        try:
            text = self.path.read_text()
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            record = json.loads(text)
        except ValueError:
            return {"mtime": mtime}
        return {**record, "mtime": mtime} if isinstance(record, dict) else {"mtime": mtime}

    def is_stale(self, record: dict) -> bool:
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
            return not _pid_alive(record["pid"], record.get("start"))
        newest = max(float(record.get("heartbeat", 0) or 0), float(record.get("mtime", 0) or 0))
        return time.time() - newest > self.stale_after

    def describe_holder(self) -> str:
        r = self.holder or {}
        if not r.get("pid"):
            return "holder unknown"
        age = time.time() - float(r.get("heartbeat", 0) or 0)
        return f"pid {r['pid']} on host {r.get('host', '?')}, heartbeat {age:.0f} s ago"

    # -- taking ----------------------------------------------------------------------------------
    def _record(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid()),
                "token": self.token, "heartbeat": time.time(), "what": self.what}

    def _create(self) -> bool:
        self.token = uuid.uuid4().hex
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            self.token = None
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self._record(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def acquire(self) -> bool:
        """Take the lock now (taking over a stale one); False if a live holder has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return True
            record = self.read()
            if record is None:
                continue  # released meanwhile: try again
            self.holder = record
            if not record.get("pid") and time.time() - record.get("mtime", time.time()) < self.stale_after:
                return False  # being written right now, or unreadable but recent
            if not self.is_stale(record) or not self._break(record):
                return False
        return False

    def _break(self, seen: dict) -> bool:
        """Remove the stale lock ``seen`` if it is still the one there; one taker at a time."""
        guard = FileLock(self.path.with_name(self.path.name + ".break"), stale_after=60)
        if not guard._create():
            old = guard.read()
            if old is None or not guard.is_stale(old) or not _unlink_if(guard.path, old):
                return False
            if not guard._create():
                return False
        try:
            now = self.read()
            if now is None:
                return True
            if now.get("token") != seen.get("token") or not self.is_stale(now):
                return False
            log.warning("taking over the stale %s lock %s (%s; last heartbeat %s)", self.what, self.path,
                        f"pid {now.get('pid')} on host {now.get('host')}",
                        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(now.get("heartbeat", 0) or 0))))
            self.path.unlink(missing_ok=True)
            return True
        finally:
            guard.path.unlink(missing_ok=True)

    # -- holding ---------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self.lost = False
        self._thread = threading.Thread(target=self._beat_loop, name=f"lock-heartbeat {self.path}", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.beat()
            except LockLostError as exc:
                log.error("%s", exc)
                return
            except OSError as exc:  # a network file system hiccup: try again at the next beat
                log.warning("could not refresh the heartbeat of %s (%s)", self.path, exc)

    def beat(self) -> None:
        """Rewrite the heartbeat time (atomically) if the lock is still ours."""
        self.check()
        tmp = self.path.with_name(f".{self.path.name}.{self.token}")
        tmp.write_text(json.dumps(self._record()))
        os.replace(tmp, self.path)

    def check(self) -> None:
        """Raise :class:`LockLostError` unless the lock file still holds our token."""
        record = self.read()
        if self.token is None or record is None or record.get("token", self.token) != self.token:
            self.lost = True
            raise LockLostError(f"the {self.what} lock {self.path} was taken over by "
                                f"{(record or {}).get('host')}/{(record or {}).get('pid')}: stop writing")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        record = self.read()
        if self.token is not None and record is not None and record.get("token") == self.token:
            _unlink_if(self.path, record)
        self.token = None

    def __enter__(self) -> "FileLock":
        if not self.acquire():
            raise FolderLockedError(f"{self.path} is held by another process ({self.describe_holder()})")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _unlink_if(path: Path, record: dict) -> bool:
    """Remove ``path`` (the caller has checked it holds ``record``)."""
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def claim(path: str | os.PathLike, what: str = "claim", stale_after: float | None = None) -> FileLock | None:
    """Try to take the lock file ``path`` now: the held :class:`FileLock`, or None if a live holder
    has it. For work items shared by several processes or machines (e.g. evaluation cells): whoever
    gets the claim computes the item, then calls ``release()``; a claim of a killed worker goes
    stale and is taken over."""
    lock = FileLock(path, what=what, stale_after=stale_after)
    return lock if lock.acquire() else None




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
