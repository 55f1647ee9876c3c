"""The generic training loop. It knows no method: it calls ``method.training_step``.

Deterministic on CPU for a fixed seed: the shuffle order of epoch e depends only on (seed, e),
the global RNG is reseeded from (seed, e) at each epoch start, and each step's own generator
from (seed, step). Resuming from an epoch checkpoint therefore replays exactly what an
uninterrupted run does.

Faults: one process per run folder (an OS lock, :func:`robustune.files.folder_lock`); a checkpoint
that fails its digests is reported and ``--resume`` falls back to the newest one that verifies;
non-finite weights or optimizer state are never saved; a full disk is one named error.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from robustune.config import RunConfig
from robustune.data import DataSplits, IndexedDataset, build_loader
from robustune import distributed as dist
from robustune.engine.checkpoint import (CheckpointCorruptError, latest_checkpoint, list_checkpoints,
                                         load_checkpoint, non_finite_tensors, save_checkpoint)
from robustune.engine.metrics import MetricsWriter
from robustune.engine.optim import create_optimizer, create_scheduler
from robustune.errors import TrainingDivergedError
from robustune.files import file_sha256, folder_lock, save_tensors
from robustune.eval.clean import accuracy
from robustune.methods import Method, SetupContext, StepContext
from robustune.runs.build import build_run
from robustune.runs.record import write_run_record
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
    if cfg.train.precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
    if dtype is None:
        raise ValueError(f"unknown train.precision {cfg.train.precision!r}; valid: fp32, bf16, fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _epoch_loader(splits: DataSplits, cfg: RunConfig, epoch: int, with_index: bool = False):
    seed = cfg.train.seed * 10_007 + epoch
    train_set = IndexedDataset(splits.train) if with_index else splits.train
    sampler = None
    if dist.is_distributed():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_set, shuffle=True, seed=cfg.train.seed, drop_last=True)
        sampler.set_epoch(epoch)
    batch = cfg.data.batch_size // dist.world_size()
    return build_loader(train_set, batch, shuffle=True, seed=seed, sampler=sampler,
                        num_workers=cfg.data.num_workers, pin_memory=cfg.data.pin_memory,
                        drop_last=sampler is not None)


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


def _resume_state(run_dir: Path, method: Method, opt, sched, metrics: MetricsWriter) -> tuple[int, int]:
    found = newest_verified_checkpoint(run_dir)
    if found is None:
        log.info("no checkpoint in %s: starting fresh", run_dir)
        return 0, 0
    ckpt, state = found
    method.load_checkpoint_state(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    metrics.truncate_after(state["step"])
    log.info("resumed from %s (epoch %d done, step %d)", ckpt.name, state["epoch"] + 1, state["step"])
    return state["epoch"] + 1, state["step"]


def _train_epoch(method: Method, loader, opt, sched, scaler, cfg: RunConfig, device, epoch: int,
                 step: int, metrics: MetricsWriter, run_dir: Path) -> tuple[int, dict[str, float]]:
    """One epoch (or fewer steps when ``train.max_steps`` is reached in it)."""
    method.train()
    totals = torch.zeros(3, device=device)  # loss sum, correct, seen: on device, no per-step sync
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=not dist.is_main_process())
    for batch in bar:
        if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
            break
        images, labels = to_device(batch[0], device), to_device(batch[1], device)
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
        if step % max(1, cfg.train.log_every) == 0:
            value = loss.item()
            logs = {k: float(v) for k, v in out.get("logs", {}).items()}
            metrics.write({"step": step, "epoch": epoch, "loss": value,
                           "lr": lr, **logs})
            bar.set_postfix(loss=f"{value:.3f}")
    t = dist.all_reduce_sum(totals)
    seen = t[2].clamp(min=1)
    stats = {"train_loss": (t[0] / seen).item(), "train_acc": (t[1] / seen).item()}
    if not bool(t[1] >= 0):  # NaN: the method returned no logits (detection), so no accuracy
        del stats["train_acc"]
    return step, stats


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

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None or not (run_dir / "model.safetensors").is_file():
        return None
    try:
        done = int(read_json(ckpt / "state.json")["epoch"]) + 1
        record = run_dir / "run.json"
        steps = read_json(record).get("steps") if record.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged record: the resume path names it and falls back
    if done >= cfg.train.epochs:
        return done
    if cfg.train.max_steps is not None and steps is not None and steps >= cfg.train.max_steps:
        return done
    return None


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
          method: Method | None = None, splits: DataSplits | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir``; with ``resume`` continue from the last checkpoint there.

    The run folder is locked for the whole run (rank 0 holds the lock): a second process on the
    same folder stops at once with :class:`robustune.files.FolderLockedError` naming the holder.
    """
    run_dir = Path(run_dir)
    device = resolve_device(cfg.train.device)
    dist.init_from_env(device)
    lock = folder_lock(run_dir) if dist.is_main_process() else contextlib.nullcontext()
    with lock:
        return _train_locked(cfg, run_dir, device, resume, method, splits)


def _train_locked(cfg: RunConfig, run_dir: Path, device: torch.device, resume: bool,
                  method: Method | None, splits: DataSplits | None) -> TrainResult:
    t0 = time.perf_counter()
    main = dist.is_main_process()
    torch.manual_seed(cfg.train.seed)
    if method is None or splits is None:
        method, splits = build_run(cfg)
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
    steps_per_epoch = max(1, len(_epoch_loader(splits, cfg, 0)))
    if main:
        write_run_record(run_dir, cfg, steps_per_epoch=steps_per_epoch)
    opt = create_optimizer(method.trainable_parameters(), cfg.optim)
    sched = create_scheduler(opt, cfg.optim, steps_per_epoch, cfg.train.epochs)
    metrics = MetricsWriter(run_dir / "metrics.jsonl", enabled=main)
    setup_ctx = SetupContext(train_set=splits.train, device=device, seed=cfg.train.seed,
                             run_dir=run_dir, batch_size=cfg.data.eval_batch_size)
    start, step = _resume_state(run_dir, method, opt, sched, metrics) if resume else (0, 0)
    if start == 0 and step == 0:
        metrics.clear()  # a fresh start: rows of a killed earlier attempt must not survive
        method.setup(setup_ctx)
    phases = {"setup": time.perf_counter() - t0}
    loop = _EpochLoop(cfg, run_dir, device, method, splits, opt, sched, metrics, setup_ctx,
                      steps_per_epoch)
    epochs_run, val_acc = loop.run(start, step)
    phases["train"] = time.perf_counter() - t0 - phases["setup"]
    if main:
        save_tensors(run_dir / "model.safetensors", method.export_state())
        write_run_record(run_dir, cfg, phases, steps_per_epoch=steps_per_epoch, classes=splits.classes,
                         steps=loop.step, weights_sha256=file_sha256(run_dir / "model.safetensors"))
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
    step: int = 0

    def run(self, start: int, step: int) -> tuple[int, float | None]:
        """Epochs ``start``.. (or until ``train.max_steps``); returns (epochs run, last val acc)."""
        cfg, method = self.cfg, self.method
        scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.precision == "fp16")
        ddp_method = _wrap_ddp(method, self.device)
        val_acc, epochs_run, self.step = None, 0, step
        watched = finite_tensor_names(method)
        for epoch in range(start, cfg.train.epochs):
            if cfg.train.max_steps is not None and self.step >= cfg.train.max_steps:
                break
            te = time.perf_counter()
            torch.manual_seed(cfg.train.seed * 10_007 + epoch)
            method.on_epoch_start(epoch, self.setup_ctx)
            loader = _epoch_loader(self.splits, cfg, epoch, with_index=self.method.needs_indices)
            self.step, stats = _train_epoch(ddp_method, loader, self.opt,
                                            self.sched, scaler, cfg, self.device, epoch, self.step,
                                            self.metrics, self.run_dir)
            epochs_run += 1
            complete = self.step >= (epoch + 1) * self.steps_per_epoch
            check_finite_state(method, self.opt, watched, epoch, self.step, self.run_dir)
            if self.splits.val is not None and cfg.train.eval_every and \
                    ((epoch + 1) % cfg.train.eval_every == 0 or not complete):
                if getattr(self.splits.val, "is_detection", False):  # COCO mAP, robustune.eval.detection
                    from robustune.eval.detection import detection_map

                    stats["val_mAP"] = detection_map(method.eval_model(), self.splits.val,
                                                     cfg.data.eval_batch_size, self.device)["mAP"]
                else:
                    val_acc = accuracy(method.eval_model(), self.splits.val, cfg.data.eval_batch_size,
                                       self.device)
                    stats["val_acc"] = val_acc
            stats["epoch_seconds"] = time.perf_counter() - te
            self.metrics.write({"step": self.step, "epoch": epoch, "epoch_end": True,
                                **({} if complete else {"max_steps_reached": True}), **stats})
            log.info("epoch %d/%d %s", epoch + 1, cfg.train.epochs,
                     " ".join(f"{k}={v:.4f}" for k, v in stats.items()))
            # an epoch cut short by max_steps gets no checkpoint: a resume replays it from the
            # previous epoch's, so resume stays exact
            if dist.is_main_process() and complete:
                save_checkpoint(self.run_dir, epoch, self.step, method.checkpoint_state(), self.opt,
                                self.sched, keep=cfg.train.keep_checkpoints)
            dist.barrier()
        return epochs_run, val_acc


def _wrap_ddp(method: Method, device: torch.device) -> Method:
    """Under torchrun, run the steps through DDP so gradients are averaged across ranks."""
    if not dist.is_distributed():
        return method
    from robustune.engine.ddp import DDPMethod

    return DDPMethod(method, device)
