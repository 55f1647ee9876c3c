"""The generic training loop. It knows no method: it calls ``method.training_step``.

Deterministic on CPU for a fixed seed: the shuffle order of epoch e depends only on (seed, e),
the global RNG is reseeded from (seed, e) at each epoch start, and each step's own generator
from (seed, step). Resuming from an epoch checkpoint therefore replays exactly what an
uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from robustune.config import RunConfig, dump_config
from robustune.data import DataSplits, build_loader
from robustune.engine import dist
from robustune.engine.build import build_run
from robustune.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_tensors
from robustune.engine.metrics import MetricsWriter
from robustune.engine.optim import create_optimizer, create_scheduler
from robustune.eval.clean import accuracy
from robustune.methods import Method, SetupContext, StepContext
from robustune.utils import environment_record, resolve_device, step_generator, write_json, write_text_atomic

log = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    method: Method
    splits: DataSplits
    epochs_run: int
    val_accuracy: float | None
    phases: dict[str, float] = field(default_factory=dict)


def _autocast(cfg: RunConfig, device: torch.device):
    if cfg.train.precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
    if dtype is None:
        raise ValueError(f"unknown train.precision {cfg.train.precision!r}; valid: fp32, bf16, fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _epoch_loader(splits: DataSplits, cfg: RunConfig, epoch: int):
    seed = cfg.train.seed * 10_007 + epoch
    sampler = None
    if dist.is_distributed():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(splits.train, shuffle=True, seed=cfg.train.seed, drop_last=True)
        sampler.set_epoch(epoch)
    batch = cfg.data.batch_size // dist.world_size()
    return build_loader(splits.train, batch, shuffle=True, seed=seed, sampler=sampler,
                        num_workers=cfg.data.num_workers, pin_memory=cfg.data.pin_memory,
                        drop_last=sampler is not None)


def _resume_state(run_dir: Path, method: Method, opt, sched, metrics: MetricsWriter) -> tuple[int, int]:
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        log.info("no checkpoint in %s: starting fresh", run_dir)
        return 0, 0
    state = load_checkpoint(ckpt)
    method.load_checkpoint_state(state["model"])
    opt.load_state_dict(state["optimizer"])
    if sched is not None and state.get("scheduler"):
        sched.load_state_dict(state["scheduler"])
    metrics.truncate_after(state["step"])
    log.info("resumed from %s (epoch %d done, step %d)", ckpt.name, state["epoch"] + 1, state["step"])
    return state["epoch"] + 1, state["step"]


def _train_epoch(method: Method, loader, opt, sched, scaler, cfg: RunConfig, device, epoch: int,
                 step: int, metrics: MetricsWriter, run_dir: Path) -> tuple[int, dict[str, float]]:
    method.train()
    totals = torch.zeros(3, device=device)  # loss sum, correct, seen: on device, no per-step sync
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
               disable=not dist.is_main_process())
    for images, labels in bar:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        ctx = StepContext(epoch=epoch, step=step,
                          generator=step_generator(cfg.train.seed, step, dist.rank(), device=device))
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
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        n = labels.numel()
        totals += torch.stack([loss.detach().float() * n, (out["logits"].argmax(1) == labels).sum().float(),
                               torch.tensor(float(n), device=device)])
        if step % max(1, cfg.train.log_every) == 0:
            value = loss.item()
            logs = {k: float(v) for k, v in out.get("logs", {}).items()}
            metrics.write({"step": step, "epoch": epoch, "loss": value,
                           "lr": opt.param_groups[0]["lr"], **logs})
            bar.set_postfix(loss=f"{value:.3f}")
    t = dist.all_reduce_sum(totals)
    return step, {"train_loss": (t[0] / t[2]).item(), "train_acc": (t[1] / t[2]).item()}


def write_run_record(run_dir: Path, cfg: RunConfig, phases: dict[str, float] | None = None) -> None:
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    write_json(run_dir / "run.json", {**environment_record(), "seed": cfg.train.seed,
                                      "phases_seconds": phases or {}})


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False,
          method: Method | None = None, splits: DataSplits | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir``; with ``resume`` continue from the last checkpoint there."""
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(cfg.train.device)
    dist.init_from_env(device)
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
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(run_dir, cfg)
    steps_per_epoch = max(1, len(_epoch_loader(splits, cfg, 0)))
    opt = create_optimizer(method.trainable_parameters(), cfg.optim)
    sched = create_scheduler(opt, cfg.optim, steps_per_epoch, cfg.train.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.precision == "fp16")
    metrics = MetricsWriter(run_dir / "metrics.jsonl", enabled=main)
    setup_ctx = SetupContext(train_set=splits.train, device=device, seed=cfg.train.seed,
                             run_dir=run_dir, batch_size=cfg.data.eval_batch_size)
    start, step = _resume_state(run_dir, method, opt, sched, metrics) if resume else (0, 0)
    if not resume or start == 0:
        if main and not resume:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        method.setup(setup_ctx)
    phases = {"setup": time.perf_counter() - t0}
    ddp_method = _wrap_ddp(method, device)
    val_acc = None
    for epoch in range(start, cfg.train.epochs):
        te = time.perf_counter()
        torch.manual_seed(cfg.train.seed * 10_007 + epoch)
        method.on_epoch_start(epoch, setup_ctx)
        step, stats = _train_epoch(ddp_method, _epoch_loader(splits, cfg, epoch), opt, sched, scaler,
                                   cfg, device, epoch, step, metrics, run_dir)
        if splits.val is not None and cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0:
            val_acc = accuracy(method.eval_model(), splits.val, cfg.data.eval_batch_size, device)
            stats["val_acc"] = val_acc
        stats["epoch_seconds"] = time.perf_counter() - te
        metrics.write({"step": step, "epoch": epoch, "epoch_end": True, **stats})
        log.info("epoch %d/%d %s", epoch + 1, cfg.train.epochs,
                 " ".join(f"{k}={v:.4f}" for k, v in stats.items()))
        if main:
            save_checkpoint(run_dir, epoch, step, method.checkpoint_state(), opt, sched,
                            keep=cfg.train.keep_checkpoints)
        dist.barrier()
    phases["train"] = time.perf_counter() - t0 - phases["setup"]
    if main:
        save_tensors(run_dir / "model.safetensors", method.export_state())
        write_run_record(run_dir, cfg, phases)
    return TrainResult(run_dir, method, splits, cfg.train.epochs - start, val_acc, phases)


def _wrap_ddp(method: Method, device: torch.device) -> Method:
    """Under torchrun, run the steps through DDP so gradients are averaged across ranks."""
    if not dist.is_distributed():
        return method
    from robustune.engine.ddp import DDPMethod

    return DDPMethod(method, device)
