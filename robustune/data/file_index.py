"""A cached, validated index of the image files of a folder tree (``root/<class>/**/<image>``).

Listing ImageNet's 1.28 M training files takes minutes on network storage, and every ``train``,
``eval`` and rank used to do it (twice). The index is built once with ``os.scandir`` and kept in
``<cache>/file_index/`` (``$ROBUSTUNE_CACHE``, shared by every process of the machine); a build
holds a lock file so concurrent ranks wait for one scan instead of each doing their own.

Validation (ours): the index records the modification time of every directory it listed. Adding,
removing or renaming a file or folder changes its parent directory's mtime, so one ``stat`` per
directory (≈ 1,000 for ImageNet) tells a current index from a stale one, which is rebuilt. Editing
a file in place keeps the index valid (it lists names, not contents).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

VERSION = 1
SCANS = {"count": 0}  # tree scans done by this process (tests count them)


def _index_path(root: Path, folders: list[str], extensions: tuple[str, ...]) -> Path:
    from robustune.utils import cache_dir

    key = json.dumps([VERSION, str(root), folders, list(extensions)])
    return cache_dir() / "file_index" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _walk(folder: str, extensions: tuple[str, ...], files: list[str], dirs: dict[str, int]) -> None:
    """Image files under ``folder`` (recursively), and the mtime of every directory listed."""
    dirs[folder] = os.stat(folder).st_mtime_ns
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                _walk(entry.path, extensions, files, dirs)
            elif entry.name.lower().endswith(extensions) and entry.is_file():
                files.append(entry.path)


def scan(root: Path, folders: list[str], extensions: tuple[str, ...]) -> dict:
    """List ``root/<folder>/**`` for each class folder: {"files": [[path, label]...], "dirs": {dir: mtime}}."""
    SCANS["count"] += 1
    dirs: dict[str, int] = {str(root): os.stat(root).st_mtime_ns}
    samples: list[list] = []
    for label, name in enumerate(folders):
        found: list[str] = []
        path = str(root / name)
        if os.path.isdir(path):
            _walk(path, extensions, found, dirs)
        samples.extend([f, label] for f in sorted(found))
    return {"version": VERSION, "root": str(root), "folders": folders, "dirs": dirs, "files": samples}


def _valid(index: dict, root: Path, folders: list[str]) -> bool:
    if index.get("version") != VERSION or index.get("root") != str(root) or index.get("folders") != folders:
        return False
    try:
        return all(os.stat(d).st_mtime_ns == m for d, m in index["dirs"].items())
    except OSError:
        return False


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``.lock (blocking): one process scans, the others then read its index."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_samples(root: str | os.PathLike, folders: list[str],
                   extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """(path, label) of every image under ``root/<folder>/`` (label = folder's index), sorted per
    folder; from the cached index when it is still valid, else scanned once and cached."""
    from robustune.files import write_text_atomic

    root = Path(os.path.abspath(root))
    path = _index_path(root, list(folders), extensions)
    index = _read(path)
    if index is None or not _valid(index, root, list(folders)):
        try:
            with _build_lock(path):
                index = _read(path)  # another process may have built it while this one waited
                if index is None or not _valid(index, root, list(folders)):
                    index = scan(root, list(folders), extensions)
                    write_text_atomic(path, json.dumps(index))
                    log.debug("indexed %d files under %s (cached in %s)", len(index["files"]), root, path)
        except OSError as exc:  # a read-only cache: scan, and say why the next start scans again
            log.warning("file index not cached (%s); scanning %s", exc, root)
            index = scan(root, list(folders), extensions)
    return [(f, int(label)) for f, label in index["files"]]
