"""Resuming anywhere: step checkpoints, the resume point, ``--resume auto`` and stop requests.

- :class:`StepCheckpoints` decides after every step whether to write a step checkpoint
  (``train.checkpoint_every``: N steps or a duration such as ``"15m"``) or to stop on a signal
  (:class:`robustune.preemption.StopSignals`); under torchrun the ranks agree on it with one small
  all-reduce per step, so every rank stops after the same step.
- :class:`ResumePoint` is what a checkpoint restores: epoch, global step, steps done inside the
  epoch, the epoch's running loss totals, every RNG state and the method's epoch-start state; with
  it a run continues bit-identically to an uninterrupted one (same world size).
- :func:`auto_resume`: ``--resume auto`` — continue a matching unfinished run, start an empty
  folder, refuse a folder holding a different run.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustune import distributed as dist
from robustune.config import RunConfig, load_config, to_dict
from robustune.engine.checkpoint import (CheckpointCorruptError, checkpoint_name, epochs_done, list_checkpoints,
                                         load_checkpoint, restore_rng_states, save_checkpoint)
from robustune.engine.rank_state import load_rank_state, prune_rank_state, save_rank_state
from robustune.files import check_folder_lock
from robustune.preemption import parse_duration

log = logging.getLogger(__name__)

EPOCH_STATE_PREFIX = "__epoch_state__."  # method.epoch_state() tensors inside a step checkpoint's model file
# Settings that change how a run is carried out, not what it computes: a folder whose config differs
# only in these still holds "the same run" for --resume auto.
OPERATIONAL = {"train.device", "train.max_steps", "train.checkpoint_every", "train.keep_checkpoints", "train.report_to",
               "train.stop_signals", "data.num_workers", "data.pin_memory", "data.decode"}


@dataclass
class ResumePoint:
    """Where training continues: the first epoch to run, the global step, and for a step checkpoint
    the steps of that epoch already done plus what replaying the rest exactly needs."""

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    totals: list[float] | None = None  # the epoch's (loss·n, correct, n) so far (all ranks summed)
    rng: dict[str, Any] | None = None
    epoch_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        return self.epoch == 0 and self.step == 0


def resume_point(state: dict[str, Any], method, opt, sched, scaler) -> ResumePoint:
    """Load a verified checkpoint ``state`` into the method, optimizer, scheduler and scaler."""
    model = {k: v for k, v in state["model"].items() if not k.startswith(EPOCH_STATE_PREFIX)}
    epoch_state = {k[len(EPOCH_STATE_PREFIX):]: v for k, v in state["model"].items()
                   if k.startswith(EPOCH_STATE_PREFIX)}
    method.load_checkpoint_state(model)
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if state.get("epoch_step") is None:
        return ResumePoint(epochs_done(state), state["step"], rng=state.get("rng"))
    return ResumePoint(int(state["epoch"]), int(state["step"]), int(state["epoch_step"]),
                       state.get("totals"), state.get("rng"), epoch_state)


def newest_verified_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint whose files match their digests; each one that fails is reported."""
    ckpts = list_checkpoints(run_dir)
    bad: list[str] = []
    for ckpt in reversed(ckpts):
        try:
            state = load_checkpoint(ckpt)
        except CheckpointCorruptError as exc:
            log.warning("checkpoint %s fails verification: %s", ckpt, exc)
            bad.append(str(exc))
            continue
        if bad:
            log.warning("resuming from %s, the newest checkpoint that verifies", ckpt)
        return ckpt, state
    if bad:
        raise CheckpointCorruptError(
            f"no checkpoint of {run_dir} verifies ({'; '.join(bad)}); move checkpoints/ away to "
            "train from scratch into this folder")
    return None


def remove_leftovers(run_dir: Path) -> int:
    """Delete what a killed writer left: temporary checkpoint folders (``checkpoints/.epoch_*``)
    and temporary files (``.NAME.*.tmp``). Only called under the run folder's lock (no live writer)."""
    leftovers = [p for p in (Path(run_dir) / "checkpoints").glob(".epoch_*") if p.is_dir()]
    leftovers += [p for p in Path(run_dir).glob(".*.tmp") if p.is_file()]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d temporary file(s) of a killed earlier attempt, e.g. %s", len(leftovers), leftovers[0].name)
    return len(leftovers)


def load_resume_point(run_dir: Path, method, opt, sched, scaler, metrics) -> ResumePoint:
    """Load the newest verified checkpoint of ``run_dir`` (none: a fresh :class:`ResumePoint`)."""
    remove_leftovers(run_dir)
    found = newest_verified_checkpoint(run_dir)
    if found is None:
        log.info("no checkpoint in %s: starting fresh", run_dir)
        return ResumePoint()
    ckpt, state = found
    point = resume_point(state, method, opt, sched, scaler)
    load_rank_state(run_dir, ckpt.name, method)  # each rank's own state (ER-APT's memory under DDP)
    metrics.truncate_after(state["step"])
    log.info("resumed from %s (epoch %d, step %d%s)", ckpt.name, point.epoch + 1, point.step,
             f", {point.epoch_step} steps into the epoch" if point.epoch_step else ", at its start")
    return point


def enter_epoch(method, epoch: int, point: ResumePoint | None, setup_ctx, seed: int) -> int:
    """Start ``epoch``: reseed and ``on_epoch_start``, or — resuming inside it — restore every RNG
    and the method's epoch state. Returns the steps of the epoch already done."""
    if point is not None and point.epoch == epoch and point.epoch_step:
        restore_rng_states(point.rng or {})
        method.on_epoch_resume(epoch, setup_ctx, point.epoch_state)
        return point.epoch_step
    if point is not None and point.epoch == epoch and point.rng:
        restore_rng_states(point.rng)  # Python's and NumPy's as the uninterrupted run left them
    torch.manual_seed(seed * 10_007 + epoch)
    method.on_epoch_start(epoch, setup_ctx)
    return 0


class StepCheckpoints:
    """After each step: a step checkpoint when due or when a stop signal came; then stop if asked."""

    def __init__(self, cfg: RunConfig, run_dir: Path, stop, device: torch.device, steps_per_epoch: int) -> None:
        every = cfg.train.checkpoint_every
        self.every_steps = every if isinstance(every, int) else None
        self.every_seconds = parse_duration(every) if isinstance(every, str) else None
        if self.every_steps is not None and self.every_steps < 1:
            raise ValueError(f"train.checkpoint_every must be ≥ 1 step or a duration like 15m, got {every}")
        self.cfg, self.run_dir, self.stop, self.device = cfg, run_dir, stop, device
        self.steps_per_epoch = steps_per_epoch
        self.last_time = time.monotonic()
        self.saved: Path | None = None

    def _decide(self, step: int) -> tuple[bool, bool]:
        due = bool(self.every_steps and step % self.every_steps == 0) or bool(
            self.every_seconds and time.monotonic() - self.last_time >= self.every_seconds)
        stop = self.stop is not None and self.stop.requested
        if dist.is_distributed():  # every rank must save / stop after the same step
            flags = torch.tensor([float(due), float(stop)], device=self.device)
            dist.all_reduce_max(flags)
            due, stop = bool(flags[0] > 0), bool(flags[1] > 0)
        return due, stop

    def after_step(self, method, opt, sched, scaler, epoch: int, step: int, totals: torch.Tensor,
                   check=None) -> bool:
        """True when training must stop now (a signal); the step checkpoint is written first, after
        ``check()`` (the finite-state check: a non-finite state is never saved)."""
        due, stop = self._decide(step)
        epoch_step = step - epoch * self.steps_per_epoch
        if stop or (due and epoch_step < self.steps_per_epoch):  # an epoch end gets its own checkpoint
            if check is not None:
                check()
            self.save(method, opt, sched, scaler, epoch, step, epoch_step, totals)
        return stop

    def save(self, method, opt, sched, scaler, epoch: int, step: int, epoch_step: int,
             totals: torch.Tensor) -> None:
        summed = dist.all_reduce_sum(totals.detach().clone())
        name = checkpoint_name(epoch, step, epoch_step)
        save_rank_state(self.run_dir, name, method)  # every rank's own state before the checkpoint
        dist.barrier()
        if dist.is_main_process():
            check_folder_lock(self.run_dir)  # never two writers: a lock taken over from us stops us here
            state = dict(method.checkpoint_state())
            state.update({EPOCH_STATE_PREFIX + k: v for k, v in method.epoch_state().items()})
            self.saved = save_checkpoint(
                self.run_dir, epoch, step, state, opt, sched, keep=self.cfg.train.keep_checkpoints,
                epoch_step=epoch_step, extra={"totals": summed.tolist(),
                                              "scaler": scaler.state_dict() if scaler.is_enabled() else None})
            prune_rank_state(self.run_dir, {p.name for p in list_checkpoints(self.run_dir)})
            log.info("step checkpoint %s", self.saved.name)
        dist.barrier()  # no rank exits before rank 0 has written it
        self.last_time = time.monotonic()


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``key: old → new`` for every setting that differs, the operational ones left out."""
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and v and k not in ("params", "options", "kwargs"):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(to_dict(old)), flat(to_dict(new))
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in OPERATIONAL and a.get(k) != b.get(k)]


def auto_resume(run_dir: Path, cfg: RunConfig) -> bool:
    """``--resume auto``: True to continue the run in ``run_dir``, False to start (an empty folder).

    Raises:
        FileExistsError: the folder holds a different run (naming the settings that differ).
    """
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        return False
    try:
        old = load_config(saved)
    except Exception as exc:  # noqa: BLE001 — any unreadable config is "not this run"
        raise FileExistsError(f"{run_dir} holds a run whose config.yaml cannot be read ({exc}); choose "
                              "another --out (nothing there was changed)") from exc
    diff = config_differences(old, cfg)
    if diff:
        shown = "; ".join(diff[:3]) + (f"; … {len(diff) - 3} more" if len(diff) > 3 else "")
        raise FileExistsError(
            f"{run_dir} holds a different run ({shown}); choose another --out, or pass --resume to "
            "continue that run with these settings (nothing there was changed)")
    return True
