"""Run a plan: the preparation steps, then the cells (resumable one by one), then the table.

``local``: stage 0 cells, then the others ``jobs`` at a time in worker processes (one GPU each
when there are GPUs, else an equal share of the CPU threads). ``slurm``: the same cells through
submitit — the preparation and stage 0 as one job, the other cells as one job array with the
resources of the table's declaration; a preempted or timed-out cell is requeued and resumes from
its last checkpoint (the engine's ``--resume``), evaluations from their ``results.json``.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustune.files import read_json, write_json
from robustune.reproduce.plan import CELL_FILE, Plan, PlanCell, config_path, make_plan, protocol_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellJob:
    """What a worker (a process or a SLURM task) needs to rebuild the plan and run one cell."""

    table: Any
    scale: Any
    out: str
    data_root: str
    sets: tuple[str, ...]
    index: int | None  # None: the preparation steps and the stage 0 cells
    prep_root: str | None = None

    def plan(self) -> Plan:
        return make_plan(self.table, self.scale, self.out, self.data_root, list(self.sets), self.prep_root)

    def __call__(self) -> Any:
        plan = self.plan()
        if self.index is None:
            prepare(plan)
            return [run_cell(plan, c) for c in plan.cells if c.stage == 0]
        return run_cell(plan, plan.cells[self.index])


PREP_WAIT_S = 6 * 3600  # a preparation step another process is running: wait for it this long


def prepare(plan: Plan) -> None:
    """Train the starting models and generate the corrupted sets the cells need (skipped if done).

    Each step holds a lock beside its folder, so two tables sharing ``--prep-root`` started at once
    wait for each other's step instead of writing one folder twice.
    """
    from robustune.config import load_config
    from robustune.corruptions.datasets import ensure_corrupted_dataset
    from robustune.data.loading import available_cores
    from robustune.engine import train
    from robustune.eval.store import waiting_lock

    for p in plan.prep:
        folder = plan.prep_dir / p.folder
        with waiting_lock(plan.prep_dir / f".{p.folder}.lock", "preparation step", PREP_WAIT_S):
            if p.kind == "train":
                cfg = load_config(config_path(p.source), list(p.sets))
                if (folder / "model.safetensors").is_file():
                    check_same_recipe(folder, cfg)
                    continue
                log.info("prep: training %s into %s", p.source, folder)
                train(cfg, folder, resume=True)
            elif p.kind == "corrupt":
                log.info("prep: corrupted %s in %s", p.source, folder)
                ensure_corrupted_dataset(p.source, folder, p.corruptions, p.severities, workers=available_cores(),
                                         **dict(p.options))


def check_same_recipe(folder: Path, cfg) -> None:
    """A finished preparation model is reused only if it was trained with the declared recipe.

    Raises:
        ConfigError: it was not (the settings that differ are named; nothing is changed).
    """
    from robustune.config import ConfigError, load_config
    from robustune.engine.resume import config_differences

    diff = config_differences(load_config(folder / "config.yaml"), cfg)
    if diff:
        shown = "; ".join(diff[:3]) + (f"; … {len(diff) - 3} more" if len(diff) > 3 else "")
        raise ConfigError(f"{folder} was trained with another recipe ({shown}); move it away or pass another "
                          "--prep-root (nothing was changed)")


def run_cell(plan: Plan, cell: PlanCell) -> dict[str, Any]:
    """Train and evaluate one cell (a finished one is only read); returns its table record."""
    if cell.fewshot is not None:
        from robustune.fewshot.protocol import run_cell as run_fewshot_cell

        return run_fewshot_cell(cell.fewshot, protocol_config(plan))
    path = cell.run_dir / CELL_FILE
    if path.is_file():
        return read_json(path)
    from robustune.ablation import cell_config, run_cell as run_grid_cell
    from robustune.config import to_dict

    base = plan.base_config()
    cfg = cell_config(to_dict(base), cell.values, cell.seed)
    log.info("cell %s", cell.name)
    res = run_grid_cell(cfg, base, cell.run_dir, plan.eval_config(), plan.options)
    record = {"values": cell.values, "seed": cell.seed, "run": str(cell.run_dir),
              "metrics": {f"{k} [{c.metric}]": c.value for k, c in res.cells.items()}}
    write_json(path, record)
    return record


def _init_worker(slots) -> None:
    """Give this worker process one device: a GPU of its own, or a share of the CPU threads."""
    slot, n = slots.get()
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(slot % torch.cuda.device_count())
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))


def run_local(plan: Plan, jobs: int = 1) -> list[dict[str, Any]]:
    """Prepare, run stage 0, then the other cells ``jobs`` at a time; returns every record."""
    import multiprocessing as mp

    job = lambda i: CellJob(plan.table, plan.scale if plan.scale_name == "custom" else plan.scale_name,  # noqa: E731
                            str(plan.out), plan.data_root, plan.extra, i,
                            None if plan.prep_root is None else str(plan.prep_root))
    records = job(None)()
    rest = [i for i, c in enumerate(plan.cells) if c.stage == 1]
    if jobs <= 1:
        return records + [run_cell(plan, plan.cells[i]) for i in rest]
    ctx = mp.get_context("spawn")
    slots = ctx.Manager().Queue()
    for s in range(jobs):
        slots.put((s, jobs))
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots,)) as pool:
        return records + list(pool.map(_call, [job(i) for i in rest]))


def _call(job: CellJob) -> Any:
    return job()


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how long on the cluster; resources per cell come from the table's declaration."""

    partition: str | None = None
    account: str | None = None
    hours: float | None = None  # time limit per cell (default: the declaration's)
    parallelism: int = 64  # array tasks at once
    cluster: str | None = None  # None = SLURM (submitit's auto); "local" runs the jobs here (tests)


class _Requeued:
    """A cell job that submitit requeues on preemption or timeout: it resumes from its checkpoints."""

    def __init__(self, job: CellJob) -> None:
        self.job = job

    def __call__(self) -> Any:
        return self.job()

    def checkpoint(self, *args: Any, **kwargs: Any):  # called by submitit before requeueing
        import submitit

        return submitit.helpers.DelayedSubmission(_Requeued(self.job))


def slurm_parameters(plan: Plan, opts: SlurmOptions) -> dict[str, Any]:
    """submitit's parameters of one cell (they become the ``#SBATCH`` lines)."""
    r = plan.scale.resources
    params: dict[str, Any] = {"timeout_min": int(60 * (opts.hours or r.hours)), "cpus_per_task": r.cpus,
                              "mem_gb": r.mem_gb, "slurm_array_parallelism": opts.parallelism,
                              "name": f"robustune-{plan.table.name}"}
    if r.gpus:
        params["gpus_per_node"] = r.gpus
    if opts.partition:
        params["slurm_partition"] = opts.partition
    if opts.account:
        params["slurm_account"] = opts.account
    return params


def sbatch_text(plan: Plan, opts: SlurmOptions) -> str:
    """The sbatch script of one cell as submitit writes it on a cluster (what ``--dry-run`` shows).

    submitit's own template (``_make_sbatch_string``) with the parameters its ``AutoExecutor``
    derives from :func:`slurm_parameters` (built here: its SLURM executor needs ``srun`` on the path).
    """
    from submitit.slurm.slurm import _make_sbatch_string

    p = slurm_parameters(plan, opts)
    kw: dict[str, Any] = {"job_name": p["name"], "time": p["timeout_min"], "cpus_per_task": p["cpus_per_task"],
                          "mem": f"{p['mem_gb']}GB", "array_parallelism": p["slurm_array_parallelism"],
                          "gpus_per_node": p.get("gpus_per_node"), "partition": p.get("slurm_partition"),
                          "account": p.get("slurm_account")}
    return _make_sbatch_string(command="python -u -m submitit.core._submit", folder=plan.out / "slurm" / "%j",
                               **kw)


def run_slurm(plan: Plan, opts: SlurmOptions) -> list[dict[str, Any]]:
    """Submit the preparation + stage 0 job, wait for it, then the other cells as one job array."""
    import submitit

    executor = submitit.AutoExecutor(folder=plan.out / "slurm" / "%j", cluster=opts.cluster)
    executor.update_parameters(**slurm_parameters(plan, opts))
    scale = plan.scale if plan.scale_name == "custom" else plan.scale_name
    prep_root = None if plan.prep_root is None else str(plan.prep_root)
    job = lambda i: _Requeued(CellJob(plan.table, scale, str(plan.out), plan.data_root, plan.extra, i,  # noqa: E731
                                      prep_root))
    first = executor.submit(job(None))
    log.info("slurm: preparation and stage 0 as job %s", first.job_id)
    records = first.result()
    with executor.batch():
        jobs = [executor.submit(job(i)) for i, c in enumerate(plan.cells) if c.stage == 1]
    log.info("slurm: %d cells as a job array (%s)", len(jobs), jobs[0].job_id.split("_")[0] if jobs else "-")
    return records + [j.result() for j in jobs]
