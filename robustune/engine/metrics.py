"""Append-only JSON-lines metrics, truncated consistently on resume.

A process killed (or a disk that filled up) in the middle of an append leaves a torn last line:
readers drop it with a warning; a bad line anywhere else is an error naming the file and line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from robustune.files import disk_full_named, write_text_atomic

log = logging.getLogger(__name__)


class MetricsWriter:
    """Writes one JSON object per line to ``metrics.jsonl`` (flushed per line)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (the checkpoint a resumed run restarts from)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        with disk_full_named(self.path):
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def clear(self) -> None:
        """A fresh start: no record of an earlier (killed) attempt survives."""
        if self.enabled:
            self.path.unlink(missing_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps(record) + "\n"
        with disk_full_named(self.path, len(line)):
            with open(self.path, "a") as fh:
                fh.write(line)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl``; a torn last line (killed mid-append) is dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if all(not rest.strip() for rest in lines[i + 1:]):
                log.warning("%s: dropped a torn last line (line %d, %d bytes: the process was "
                            "stopped or the disk filled up mid-write)", path, i + 1, len(line))
                break
            raise ValueError(f"{path}: line {i + 1} is not JSON ({exc.msg}); "
                             "remove that line (or the file, to lose the log) and rerun") from exc
    return records
