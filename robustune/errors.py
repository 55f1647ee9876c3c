"""Errors a user can act on. Light (no torch import) so the CLI can name them in one line cheaply."""

from __future__ import annotations


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were requested but cannot be fetched, found, read or fitted."""


class DiskFullError(OSError):
    """The disk (or a quota / file-size limit) ran out while writing; the message names the path."""

    def __str__(self) -> str:
        return str(self.strerror)


class FolderLockedError(RuntimeError):
    """Another process holds the lock of a run or results folder."""


class CorruptFileError(RuntimeError):
    """A file is truncated, corrupted or does not match the digest recorded for it."""


class TrainingDivergedError(RuntimeError):
    """The loss, the weights or the optimizer state became NaN/inf; the last good checkpoint is kept."""


class ProtocolError(RuntimeError):
    """Some cells of a few-shot protocol failed (with ``keep_going``); the others are finished and tabulated."""
