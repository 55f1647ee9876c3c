"""The generic training loop. It knows no method: it calls ``method.training_step``.

Deterministic on CPU for a fixed seed: the shuffle order of epoch e depends only on (seed, e),
the global RNG is reseeded from (seed, e) at each epoch start, and each step's own generator
from (seed, step). Resuming from an epoch checkpoint therefore replays exactly what an
uninterrupted run does; a step checkpoint (``train.checkpoint_every``, or written on SIGTERM /
SIGUSR1: :mod:`robustune.engine.resume`) also restores the sampler position, every RNG state and
the epoch's running totals, so resuming inside an epoch is exact too.

Faults: one process per run folder (a lock file, :func:`robustune.files.folder_lock`); a checkpoint
that fails its digests is reported and ``--resume`` falls back to the newest one that verifies;
non-finite weights or optimizer state are never saved; a full disk is one named error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from robustune.config import RunConfig, to_dict
from robustune.data import DataSplits, IndexedDataset
from robustune.data.loading import DeviceBatches, EpochSampler, LoaderOptions
from robustune.data.splits import SkipSampler, evaluation_split_layout
from robustune import distributed as dist
from robustune.engine.checkpoint import (checkpoint_name, latest_checkpoint, list_checkpoints, non_finite_tensors,
                                         save_checkpoint)
from robustune.engine.cost import PassCounter
from robustune.engine.metrics import MetricsWriter
from robustune.engine.rank_state import prune_rank_state, save_rank_state
from robustune.engine.optim import create_optimizer, create_scheduler
from robustune.engine.resume import (ResumePoint, StepCheckpoints, auto_resume, enter_epoch, load_resume_point,
                                     newest_verified_checkpoint)  # noqa: F401  (re-exported)
from robustune.errors import TrainingDivergedError
from robustune.eval.clean import accuracy
from robustune.files import check_folder_lock, file_sha256, folder_lock, save_tensors
from robustune.preemption import Preempted, StopSignals
from robustune.methods import Method, SetupContext, StepContext
from robustune.precision import autocast, check_inner_attack_precision, resolve_precision
from robustune.runs.build import build_run
from robustune.runs.record import write_run_record
from robustune.tracking import Trackers, check_report_to
from robustune.utils import resolve_device, step_generator

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    method: Method
    splits: DataSplits
    epochs_run: int
    val_accuracy: float | None
    phases: dict[str, float] = field(default_factory=dict)
    already_finished: bool = False  # --resume of a finished run: nothing was run or written


def _autocast(cfg: RunConfig, device: torch.device):
    return autocast(resolve_precision(cfg.train.precision, device), device)


def _train_batches(splits: DataSplits, cfg: RunConfig, device: torch.device,
                   with_index: bool = False) -> tuple[DeviceBatches, SkipSampler, int]:
    """The training batches of every epoch: one loader (workers kept), reshuffled per epoch.

    The order of epoch e depends only on (seed, e) (``sampler.set_epoch(e)``): the same orders the
    per-epoch loaders of earlier versions drew, so resumes stay exact; ``sampler.set_epoch(e,
    skip=k)`` leaves out the first k samples of this rank's order (a resume inside epoch e).
    Returns (batches, sampler, per-rank batch size).
    """
    train_set = IndexedDataset(splits.train) if with_index else splits.train
    if dist.is_distributed():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_set, shuffle=True, seed=cfg.train.seed, drop_last=True)
    else:
        seed = cfg.train.seed
        sampler = EpochSampler(len(train_set), lambda epoch: seed * 10_007 + epoch)
    sampler = SkipSampler(sampler, 0)
    batch = dist.per_rank_batch(cfg.data.batch_size)
    return DeviceBatches(train_set, batch, device, LoaderOptions.from_config(cfg.data), sampler=sampler,
                         drop_last=dist.is_distributed()), sampler, batch


def _train_epoch(method: Method, loader, opt, sched, scaler, cfg: RunConfig, device, epoch: int,
                 step: int, metrics: MetricsWriter, run_dir: Path, totals: torch.Tensor,
                 after_step=None, counter: PassCounter | None = None) -> tuple[int, dict[str, float], bool]:
    """One epoch (or fewer steps when ``train.max_steps`` is reached in it, or a stop signal came).

    ``totals``: the epoch's (loss·n, correct, n) so far; ``after_step(step, totals)`` returns True
    to stop (it has saved a step checkpoint); ``counter`` counts each step's passes and time.
    Returns (step, stats, stopped).
    """
    method.train()
    stopped = False
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=not dist.is_main_process())
    for batch in bar:
        if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
            break
        t_step = time.perf_counter()
        images, labels = to_device(batch[0], device), to_device(batch[1], device)  # images: on device already
        indices = batch[2] if len(batch) > 2 else None
        if cfg.train.channels_last and torch.is_tensor(images):
            images = images.contiguous(memory_format=torch.channels_last)
        ctx = StepContext(epoch=epoch, step=step,
                          generator=step_generator(cfg.train.seed, step, dist.rank(), device=device),
                          indices=indices)
        with _autocast(cfg, device):
            out = method.training_step(images, labels, ctx)
        loss = out["loss"]
        if not bool(torch.isfinite(loss)):  # the one sync per step: never step on a NaN
            last = latest_checkpoint(run_dir)
            raise TrainingDivergedError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step}. The last good checkpoint "
                f"is kept ({last or 'none yet'}). Lower optim.lr, set optim.grad_clip, or use precision fp32."
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.optim.grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(list(method.trainable_parameters()), cfg.optim.grad_clip)
        lr = opt.param_groups[0]["lr"]  # the value this step uses (the scheduler moves it next)
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        totals += _step_totals(out, loss, labels, device)
        if counter is not None:
            counter.step_done(int(out.get("n", labels.numel() if torch.is_tensor(labels) else len(labels))),
                              time.perf_counter() - t_step)
        if step % max(1, cfg.train.log_every) == 0:
            value = loss.item()
            logs = {k: float(v) for k, v in out.get("logs", {}).items()}
            metrics.write({"step": step, "epoch": epoch, "loss": value,
                           "lr": lr, **logs})
            bar.set_postfix(loss=f"{value:.3f}")
        if after_step is not None and after_step(step, totals):
            stopped = True
            break
    if stopped:
        return step, {}, True
    t = dist.all_reduce_sum(totals)
    seen = t[2].clamp(min=1)
    stats = {"train_loss": (t[0] / seen).item(), "train_acc": (t[1] / seen).item()}
    if not bool(t[1] >= 0):  # NaN: the method returned no logits (detection), so no accuracy
        del stats["train_acc"]
    return step, stats, False


def to_device(batch: Any, device: torch.device) -> Any:
    """A tensor, or the lists / dicts of tensors that detection batches are, on ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _step_totals(out: dict[str, Any], loss: torch.Tensor, labels: Any, device) -> torch.Tensor:
    """(loss·n, correct, n) of a step; ``n`` is ``out["n"]`` if given (detection: images), else the
    number of labels; ``correct`` is NaN when the step returns no ``logits``."""
    n = float(out.get("n", labels.numel() if torch.is_tensor(labels) else len(labels)))
    correct = ((out["logits"].argmax(1) == labels).sum().float() if "logits" in out
               else torch.tensor(float("nan"), device=device))
    return torch.stack([loss.detach().float() * n, correct, torch.tensor(n, device=device)])


def finite_tensor_names(method: Method) -> set[str]:
    """Names of the checkpointed tensors that are finite now: the ones that must stay finite.

    A method may keep NaN/inf on purpose (ER-APT's loss-weighting window starts as NaN = "no
    history yet", CLIP's attention mask holds -inf); those are not watched.
    """
    state = method.checkpoint_state()
    return set(state) - set(non_finite_tensors(state))


def check_finite_state(method: Method, opt, watched: set[str], epoch: int, step: int,
                       run_dir: Path) -> None:
    """Refuse to save or evaluate weights (or optimizer moments) that became NaN/inf."""
    state = method.checkpoint_state()
    bad = non_finite_tensors({k: v for k, v in state.items() if k in watched})
    opt_bad = [f"optimizer state {i}.{k}" for i, entry in opt.state_dict()["state"].items()
               for k, v in entry.items() if isinstance(v, torch.Tensor) and non_finite_tensors({k: v})]
    if bad or opt_bad:
        names = bad + opt_bad
        raise TrainingDivergedError(
            f"the weights became non-finite at step {step} (epoch {epoch + 1}; the loss was still "
            f"finite): {len(names)} tensor(s), e.g. {names[0]}. Not saved; the last good checkpoint is "
            f"kept ({latest_checkpoint(run_dir) or 'none yet'}). Lower optim.lr or set optim.grad_clip."
        )


def _finished_epochs(run_dir: Path, cfg: RunConfig) -> int | None:
    """Epochs done when ``run_dir`` holds a finished run: final weights, and the last epoch
    checkpointed (or the ``train.max_steps`` recorded as reached in ``run.json``)."""
    from robustune.files import read_json

    from robustune.engine.checkpoint import epochs_done

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None or not (run_dir / "model.safetensors").is_file():
        return None
    try:
        done = epochs_done(read_json(ckpt / "state.json"))
        record = run_dir / "run.json"
        steps = read_json(record).get("steps") if record.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged record: the resume path names it and falls back
    if done >= cfg.train.epochs:
        return done
    if cfg.train.max_steps is not None and steps is not None and steps >= cfg.train.max_steps:
        return done
    return None


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool | str = False,
          method: Method | None = None, splits: DataSplits | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir``; with ``resume`` continue from the last checkpoint there.

    ``resume="auto"``: continue if ``run_dir`` holds this run unfinished, start if it is empty,
    refuse (FileExistsError) if it holds a different run. The run folder is locked for the whole run
    (rank 0 holds the lock): a second process on the same folder stops at once with
    :class:`robustune.files.FolderLockedError` naming the holder. On one of ``train.stop_signals``
    every rank finishes its step, rank 0 writes a step checkpoint and :class:`Preempted` is raised.
    """
    run_dir = Path(run_dir)
    check_report_to(cfg.train.report_to)  # a typo stops before any work
    cfg = dataclasses.replace(cfg, data=evaluation_split_layout(cfg.data))  # train/ + val/, no test/
    device = resolve_device(cfg.train.device)
    dist.init_from_env(device)
    dist.per_rank_batch(cfg.data.batch_size)  # a batch the ranks cannot share: one line, nothing written
    lock = folder_lock(run_dir) if dist.is_main_process() else contextlib.nullcontext()
    with lock, StopSignals(cfg.train.stop_signals) as stop:
        if resume == "auto":
            resume = auto_resume(run_dir, cfg)
        elif resume not in (True, False):
            raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
        return _train_locked(cfg, run_dir, device, resume, method, splits, stop)


def _train_locked(cfg: RunConfig, run_dir: Path, device: torch.device, resume: bool,
                  method: Method | None, splits: DataSplits | None, stop: StopSignals | None = None) -> TrainResult:
    t0 = time.perf_counter()
    main = dist.is_main_process()
    torch.manual_seed(cfg.train.seed)
    if method is None or splits is None:
        method, splits = build_run(cfg)
    check_inner_attack_precision(resolve_precision(cfg.train.precision, device), cfg.method.name,
                                 method.has_inner_attack)
    method.to(device)
    if cfg.train.channels_last:
        method.to(memory_format=torch.channels_last)
    if cfg.train.compile:
        method.eval_model().compile()  # in place: state_dict keys are unchanged
    if not resume and latest_checkpoint(run_dir) is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints of a run; pass --resume to continue it, "
            "or choose another output folder (nothing there was changed)"
        )
    done = _finished_epochs(run_dir, cfg) if resume else None
    if done is not None:
        log.info("%s already finished (%d epochs); nothing was changed", run_dir, done)
        method.load_export(run_dir / "model.safetensors")
        return TrainResult(run_dir, method, splits, 0, None, already_finished=True)
    batches, sampler, batch = _train_batches(splits, cfg, device, with_index=method.needs_indices)
    steps_per_epoch = max(1, len(batches))
    if main:
        write_run_record(run_dir, cfg, steps_per_epoch=steps_per_epoch)
    opt = create_optimizer(method.trainable_parameters(), cfg.optim)
    sched = create_scheduler(opt, cfg.optim, steps_per_epoch, cfg.train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(cfg.train.precision, device) == "fp16")
    metrics = MetricsWriter(run_dir / "metrics.jsonl", enabled=main)
    setup_ctx = SetupContext(train_set=splits.train, device=device, seed=cfg.train.seed,
                             run_dir=run_dir, batch_size=cfg.data.eval_batch_size)
    steps = StepCheckpoints(cfg, run_dir, stop, device, steps_per_epoch)
    point = load_resume_point(run_dir, method, opt, sched, scaler, metrics) if resume else ResumePoint()
    if point.fresh:
        metrics.clear()  # a fresh start: rows of a killed earlier attempt must not survive
        method.setup(setup_ctx)
    phases = {"setup": time.perf_counter() - t0}
    counter = None if cfg.train.compile else PassCounter().attach(method.cost_module())
    metrics.trackers = trackers = Trackers(cfg.train.report_to if main else [], run_dir, cfg.name, to_dict(cfg))
    loop = _EpochLoop(cfg, run_dir, device, method, splits, opt, sched, metrics, setup_ctx,
                      steps_per_epoch, scaler, steps, batches, sampler, batch, counter=counter)
    try:
        epochs_run, val_acc = loop.run(point)
    finally:
        trackers.close()
        if counter is not None:
            counter.detach()
    phases["train"] = time.perf_counter() - t0 - phases["setup"]
    compute = counter.record() if counter is not None else {"note": "not counted under train.compile"}
    if main:
        save_tensors(run_dir / "model.safetensors", method.export_state())
        write_run_record(run_dir, cfg, phases, steps_per_epoch=steps_per_epoch, classes=splits.classes,
                         steps=loop.step, weights_sha256=file_sha256(run_dir / "model.safetensors"),
                         method=cfg.method.name, compute=compute)
    return TrainResult(run_dir, method, splits, epochs_run, val_acc, phases)


@dataclass
class _EpochLoop:
    cfg: RunConfig
    run_dir: Path
    device: torch.device
    method: Method
    splits: DataSplits
    opt: Any
    sched: Any
    metrics: MetricsWriter
    setup_ctx: SetupContext
    steps_per_epoch: int
    scaler: Any
    checkpoints: StepCheckpoints
    batches: DeviceBatches
    sampler: SkipSampler
    batch: int  # per rank
    counter: PassCounter | None = None
    step: int = 0

    def run(self, point: ResumePoint) -> tuple[int, float | None]:
        """Epochs from ``point`` on (or until ``train.max_steps``); returns (epochs run, last val acc).

        Raises:
            Preempted: a stop signal came; a step checkpoint holds everything done so far.
        """
        cfg, method = self.cfg, self.method
        precision = resolve_precision(cfg.train.precision, self.device)
        ddp_method = _wrap_ddp(method, self.device)
        val_acc, epochs_run, self.step = None, 0, point.step
        watched = finite_tensor_names(method)
        for epoch in range(point.epoch, cfg.train.epochs):
            if cfg.train.max_steps is not None and self.step >= cfg.train.max_steps:
                break
            te = time.perf_counter()
            with self._not_counted():
                skip = enter_epoch(method, epoch, point, self.setup_ctx, cfg.train.seed)
            totals = torch.zeros(3, device=self.device)  # loss sum, correct, seen: no per-step sync
            if skip and point.totals is not None and dist.is_main_process():
                totals += torch.tensor(point.totals, device=self.device)  # summed over ranks: once
            self.sampler.set_epoch(epoch, skip=skip * self.batch)
            self.step, stats, stopped = _train_epoch(
                ddp_method, self.batches, self.opt, self.sched, self.scaler, cfg, self.device, epoch, self.step,
                self.metrics, self.run_dir, totals, lambda s, t: self._after_step(epoch, s, t, watched),
                self.counter)
            if stopped:
                self._stopped(epoch)
            epochs_run += 1
            complete = self.step >= (epoch + 1) * self.steps_per_epoch
            check_finite_state(method, self.opt, watched, epoch, self.step, self.run_dir)
            if self.splits.val is not None and cfg.train.eval_every and \
                    ((epoch + 1) % cfg.train.eval_every == 0 or not complete):
                val = self._validate(precision)
                val_acc = val.get("val_acc", val_acc)
                stats.update(val)
            stats["epoch_seconds"] = time.perf_counter() - te
            self.metrics.write({"step": self.step, "epoch": epoch, "epoch_end": True,
                                **({} if complete else {"max_steps_reached": True}), **stats})
            log.info("epoch %d/%d %s", epoch + 1, cfg.train.epochs,
                     " ".join(f"{k}={v:.4f}" for k, v in stats.items()))
            # an epoch cut short by max_steps gets no checkpoint: a resume replays it from the
            # previous epoch's, so resume stays exact
            if complete:  # every rank's own state first: a checkpoint that exists has its rank files
                save_rank_state(self.run_dir, checkpoint_name(epoch, self.step), method)
                dist.barrier()
            if dist.is_main_process() and complete:
                check_folder_lock(self.run_dir)  # never two writers
                save_checkpoint(self.run_dir, epoch, self.step, method.checkpoint_state(), self.opt,
                                self.sched, keep=cfg.train.keep_checkpoints,
                                extra={"scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None})
                prune_rank_state(self.run_dir, {p.name for p in list_checkpoints(self.run_dir)})
            dist.barrier()
        return epochs_run, val_acc

    def _after_step(self, epoch: int, step: int, totals: torch.Tensor, watched: set[str]) -> bool:
        """A step checkpoint when due (never of a non-finite state); True to stop on a signal."""
        return self.checkpoints.after_step(
            self.method, self.opt, self.sched, self.scaler, epoch, step, totals,
            check=lambda: check_finite_state(self.method, self.opt, watched, epoch, step, self.run_dir))

    def _stopped(self, epoch: int) -> None:
        stop = self.checkpoints.stop
        saved = self.checkpoints.saved
        raise Preempted(f"stopped by {stop.name if stop else 'a stop request'} at step {self.step} "
                        f"(epoch {epoch + 1}); step checkpoint {saved.name if saved else 'written'} in "
                        f"{self.run_dir / 'checkpoints'}",
                        how=f"--out {self.run_dir} --resume auto")

    def _not_counted(self):
        return self.counter.paused() if self.counter is not None else contextlib.nullcontext()

    def _validate(self, precision: str) -> dict[str, float]:
        """Validation accuracy (or COCO mAP for a detector, robustune.eval.detection); not step cost."""
        model, cfg = self.method.eval_model(), self.cfg
        with self._not_counted():
            if getattr(self.splits.val, "is_detection", False):
                from robustune.eval.detection import detection_map

                return {"val_mAP": detection_map(model, self.splits.val, cfg.data.eval_batch_size,
                                                 self.device, precision=precision)["mAP"]}
            return {"val_acc": accuracy(model, self.splits.val, cfg.data.eval_batch_size, self.device,
                                        loader=LoaderOptions.from_config(cfg.data), precision=precision)}


def _wrap_ddp(method: Method, device: torch.device) -> Method:
    """Under torchrun, run the steps through DDP so gradients are averaged across ranks."""
    if not dist.is_distributed():
        return method
    from robustune.engine.ddp import DDPMethod

    return DDPMethod(method, device, broadcast_buffers=not method.has_rank_state)
