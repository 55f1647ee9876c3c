"""Experiment tracking with the ecosystem's convention (open_clip's ``--report-to``).

``train.report_to: [tensorboard, wandb]`` (or ``--report-to tensorboard,wandb``) sends every number
robustune already writes to ``metrics.jsonl`` — losses, lr, the methods' own terms (GFN's weighted
readings, ER-APT's dynamic weights and evolution gain, ...), epoch summaries, validation accuracy —
to TensorBoard (``RUN/tensorboard/`` event files) and/or Weights & Biases (its run folder under
``RUN/wandb/``; offline when ``WANDB_MODE=offline`` or when no login is found), evaluation cells
as summaries, and report figures as images. Without ``report_to`` nothing is imported or written.

This module is in the base layer: it imports nothing of robustune's.
"""

from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

TRACKERS = ("tensorboard", "wandb")


def check_report_to(names: Iterable[str]) -> list[str]:
    """Validated tracker names; an unknown one is an error naming the valid ones."""
    out = [str(n).strip().lower() for n in names if str(n).strip()]
    bad = [n for n in out if n not in TRACKERS]
    if bad:
        raise ValueError(f"unknown report_to {bad[0]!r}; valid: {', '.join(TRACKERS)} "
                         "(e.g. --report-to tensorboard,wandb)")
    return out


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and k != "step"}


class TensorBoardTracker:
    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def log(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
        for k, v in _scalars(record).items():
            self.writer.add_scalar(prefix + k, v, step)

    def summary(self, values: dict[str, float], prefix: str) -> None:
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}{k}", v, 0)
        self.writer.add_text(f"{prefix}summary", "\n".join(f"{k}: {v:.6g}  " for k, v in values.items()), 0)

    def image(self, name: str, path: Path) -> None:
        import numpy as np
        from PIL import Image

        self.writer.add_image(name, np.asarray(Image.open(path).convert("RGB")), 0, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbTracker:
    def __init__(self, folder: Path, name: str, config: dict[str, Any] | None, job_type: str) -> None:
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_logged_in() else "offline")
        if mode == "offline":
            log.info("W&B offline (no login found): sync later with `wandb sync %s/wandb/offline-run-*`", folder)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "robustune"), name=name, dir=str(folder),
                              config=config or {}, job_type=job_type, mode=mode, reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))
        self.folder = Path(self.run.dir).parent

    def log(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
        self.run.log({prefix + k: v for k, v in _scalars(record).items()}, step=step)

    def summary(self, values: dict[str, float], prefix: str) -> None:
        self.run.summary.update({prefix + k: v for k, v in values.items()})

    def image(self, name: str, path: Path) -> None:
        import wandb

        self.run.log({name: wandb.Image(str(path))})

    def close(self) -> None:
        self.run.finish()


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace")


class Trackers:
    """The trackers of one run (possibly none); every call is a no-op without ``report_to``."""

    def __init__(self, report_to: Iterable[str], folder: str | Path, name: str,
                 config: dict[str, Any] | None = None, job_type: str = "train") -> None:
        self.items: list[Any] = []
        folder = Path(folder)
        for tracker in check_report_to(report_to):
            if tracker == "tensorboard":
                self.items.append(TensorBoardTracker(folder / "tensorboard"))
            else:
                self.items.append(WandbTracker(folder, name, config, job_type))

    def log(self, record: dict[str, Any], prefix: str = "") -> None:
        """A metrics.jsonl record (its ``step`` is the x axis)."""
        for t in self.items:
            t.log(record, int(record.get("step", 0)), prefix)

    def summary(self, values: dict[str, float], prefix: str = "eval/") -> None:
        for t in self.items:
            t.summary(values, prefix)

    def images(self, paths: Iterable[Path], prefix: str = "report/") -> None:
        for path in paths:
            for t in self.items:
                t.image(prefix + Path(path).stem, Path(path))

    def close(self) -> None:
        for t in self.items:
            t.close()
        self.items = []

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
