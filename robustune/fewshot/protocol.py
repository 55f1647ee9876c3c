"""The few-shot protocols of CoOp / FAP / ER-APT (spec §6) as a grid of resumable cells.

A protocol is datasets × settings × shots × methods × seeds. Each cell is one run folder trained by
the generic engine (:func:`robustune.engine.train`) and evaluated by
:func:`robustune.eval.evaluate` (natural accuracy and PGD, by default PGD-100 at ε = α = 1/255):

- ``fewshot``: K shots of every class, evaluated on the whole test split;
- ``base2new``: K shots of the base classes (first ⌈n/2⌉ by label), evaluated on the base and on
  the new classes' test images (each with its own class names, labels 0..n_sub-1);
- ``cross``: K shots of every class of the source dataset, evaluated on the source and on each
  target dataset's whole test split.

Every cell is expressed as plain configs (``data.name: fewshot`` with ``options.source / subset /
shots / seed``), so a cell's ``config.yaml`` reproduces it with ``robustune train``. The model of
an evaluation is rebuilt from the evaluation's config, so a CLIP method builds its text head from
the evaluated split's ``classes`` and loads only the trained prompts. A finished cell holds
``cell.json`` and is skipped; an unfinished one resumes from its last checkpoint and its
evaluations from their ``results.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robustune.config import EvalConfig, MethodConfig, RunConfig, load_config
from robustune.errors import ProtocolError
from robustune.files import read_json, write_json
from robustune.registry import unknown_choice_message

log = logging.getLogger(__name__)

SETTINGS = ("fewshot", "base2new", "cross")
CELL_FILE = "cell.json"


@dataclass
class ProtocolConfig:
    """What to run: the grid and the evaluation (defaults: FAP's PGD-100 at ε = α = 1/255)."""

    datasets: list[str] = field(default_factory=lambda: ["digits"])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    settings: list[str] = field(default_factory=lambda: ["base2new"])
    shots: list[int] = field(default_factory=lambda: [16])
    methods: list[str] = field(default_factory=list)  # names or YAML presets; empty = the config's
    cross_source: str | None = None  # default: the first dataset; targets are the others
    eps: list[float] = field(default_factory=lambda: [1 / 255])
    pgd_steps: int = 100
    pgd_alpha: float | None = 1 / 255
    n_eval: int | None = None  # fixed seeded subset of each test split (None = all)
    eval_seed: int = 0
    extra_suites: list[str] = field(default_factory=list)  # e.g. an AutoAttack suite
    suite_options: dict[str, Any] = field(default_factory=dict)  # EvalContext.options
    overrides: list[str] = field(default_factory=list)  # ``--set`` items, also for method presets

    def validate(self) -> None:
        for s in self.settings:
            if s not in SETTINGS:
                raise ValueError(unknown_choice_message("few-shot setting", s, SETTINGS))
        if not self.datasets or not self.seeds or not self.shots or not self.settings:
            raise ValueError("datasets, seeds, shots and settings must each name at least one value")
        if any(k <= 0 for k in self.shots):
            raise ValueError(f"shots must be positive, got {self.shots}")
        from robustune.eval import SUITES

        for suite in self.extra_suites:
            SUITES.get(suite)  # an unknown name fails now, not after the first training

    def eval_config(self) -> EvalConfig:
        return EvalConfig(suites=["clean", "pgd", *self.extra_suites], eps=list(self.eps),
                          pgd_steps=self.pgd_steps, pgd_alpha=self.pgd_alpha,
                          n_examples=self.n_eval, split="test", seed=self.eval_seed)


@dataclass
class ProtocolRun:
    """One run of the grid: its training config and one config per evaluation."""

    setting: str
    dataset: str
    shots: int
    method: str
    seed: int
    run_dir: Path
    train_cfg: RunConfig
    evals: dict[str, RunConfig]

    def key(self) -> dict[str, Any]:
        return {"setting": self.setting, "dataset": self.dataset, "shots": self.shots,
                "method": self.method, "seed": self.seed}


def source_of(cfg: RunConfig) -> str:
    """The dataset a config trains on (``options.source`` of a ``fewshot`` dataset)."""
    return str(cfg.data.options.get("source")) if cfg.data.name == "fewshot" else cfg.data.name


def fewshot_config(base: RunConfig, dataset: str, subset: str, shots: int | None, seed: int,
                   name: str) -> RunConfig:
    """``base`` trained (or evaluated) on a few-shot class-subset view of ``dataset``."""
    cfg = copy.deepcopy(base)
    options = {k: v for k, v in cfg.data.options.items() if k not in ("source", "subset", "shots", "seed")}
    options.update(source=dataset, subset=subset, shots=shots, seed=seed)
    cfg.data = dataclasses.replace(cfg.data, name="fewshot", options=options, shots=None,
                                   train_subset=None, train_split="train", val_split="val",
                                   test_split="test")
    cfg.train = dataclasses.replace(cfg.train, seed=seed)
    cfg.name = name
    return cfg


def eval_only(cfg: RunConfig) -> RunConfig:
    """An evaluation config: no val split is loaded (ImageNet has none without sampling)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_split=""))


def method_configs(base: RunConfig, methods: list[str],
                   overrides: list[str] | None = None) -> dict[str, RunConfig]:
    """Label → config per method entry: a registered name, or a YAML preset (with ``overrides``)."""
    if not methods:
        return {base.method.name: base}
    out: dict[str, RunConfig] = {}
    for entry in methods:
        if entry.endswith((".yaml", ".yml")):
            cfg = load_config(entry, list(overrides or []))
            label = cfg.method.name if cfg.method.name not in out else Path(entry).stem
        else:
            cfg = copy.deepcopy(base)
            cfg.method = MethodConfig(name=entry, params=shared_params(base.method, entry))
            label = entry
        out[label] = cfg
    return out


def shared_params(method: MethodConfig, other: str) -> dict[str, Any]:
    """The params of ``method`` that method ``other`` also takes (e.g. the training ε, depth).

    Params are validated strictly per method, so the others are dropped (with a log line).
    """
    from robustune.methods import METHODS

    if other == method.name:
        return dict(method.params)
    fields = {f.name for f in dataclasses.fields(METHODS.get(other).Params)}
    dropped = sorted(k for k in method.params if k not in fields)
    if dropped:
        log.info("method %s: not using %s of %s's params", other, ", ".join(dropped), method.name)
    return {k: v for k, v in method.params.items() if k in fields}


def plan_cells(base: RunConfig, protocol: ProtocolConfig, out_dir: str | Path) -> list[ProtocolRun]:
    """Every cell of the grid, in a stable order (setting, dataset, shots, method, seed)."""
    protocol.validate()
    out_dir = Path(out_dir)
    cells = []
    for setting in protocol.settings:
        sources = protocol.datasets
        if setting == "cross":
            sources = [protocol.cross_source or protocol.datasets[0]]
        for dataset in sources:
            for shots in protocol.shots:
                for label, mcfg in method_configs(base, protocol.methods, protocol.overrides).items():
                    for seed in protocol.seeds:
                        run_dir = out_dir / setting / dataset / f"{shots}shot" / label / f"seed{seed}"
                        name = f"{setting}-{dataset}-{shots}shot-{label}-seed{seed}"
                        cells.append(_cell(setting, dataset, shots, label, seed, run_dir, name,
                                           mcfg, protocol))
    return cells


def _cell(setting: str, dataset: str, shots: int, label: str, seed: int, run_dir: Path, name: str,
          mcfg: RunConfig, protocol: ProtocolConfig) -> ProtocolRun:
    subset = "base" if setting == "base2new" else "all"
    train_cfg = fewshot_config(mcfg, dataset, subset, shots, seed, name)
    if setting == "base2new":
        evals = {"base": train_cfg, "new": fewshot_config(mcfg, dataset, "new", shots, seed, name)}
    elif setting == "cross":
        targets = [d for d in protocol.datasets if d != dataset]
        evals = {dataset: train_cfg}
        evals.update({t: fewshot_config(mcfg, t, "all", None, seed, name) for t in targets})
    else:
        evals = {"all": train_cfg}
    return ProtocolRun(setting, dataset, shots, label, seed, run_dir, train_cfg,
                        {k: eval_only(v) for k, v in evals.items()})


def train_cell(cell: ProtocolRun) -> None:
    """Train the cell's run (skip if finished, resume from the last checkpoint if started).

    A method with nothing to train (zero-shot CLIP) gets its run folder as built: config, run
    record and its (possibly empty) export, so it is evaluated like any trained run.
    """
    from robustune.engine import train
    from robustune.engine.checkpoint import latest_checkpoint
    from robustune.runs.build import build_run
    from robustune.runs.zeroshot import has_nothing_to_train, write_untrained_run

    if (cell.run_dir / "model.safetensors").is_file():
        log.info("%s: already trained", cell.run_dir)
        return
    torch.manual_seed(cell.train_cfg.train.seed)  # as the engine does before building: same init
    method, splits = build_run(cell.train_cfg)
    if has_nothing_to_train(method):
        log.info("%s: method %r has nothing to train; evaluated as built", cell.run_dir, cell.method)
        write_untrained_run(cell.train_cfg, cell.run_dir, method.export_state())
        return
    resume = latest_checkpoint(cell.run_dir) is not None
    train(cell.train_cfg, cell.run_dir, resume=resume, method=method, splits=splits)


def evaluate_cell(cell: ProtocolRun, protocol: ProtocolConfig) -> dict[str, Any]:
    """Natural and PGD accuracy of the trained cell on each of its evaluation sets."""
    from robustune.eval import eps_label, pgd_key
    from robustune.runs.evaluate import evaluate_run

    ecfg = protocol.eval_config()
    out: dict[str, Any] = {}
    for name, cfg in cell.evals.items():
        # cross-dataset cells evaluate on other class lists on purpose
        results, classes = evaluate_run(cell.run_dir, ecfg, cell.run_dir / f"eval_{name}", cfg=cfg,
                                        split="test", options=protocol.suite_options,
                                        check_weights_classes=False, dataset_info=cfg.data.options)
        pgd = {pgd_key(eps, ecfg.pgd_steps): eps_label(eps) for eps in ecfg.eps}
        out[name] = {
            "natural": results.value("clean"),
            "pgd": {label: results.value(key) for key, label in pgd.items()},
            # robust accuracies of the extra suites (e.g. AutoAttack), by cell key
            "robust": {k: c.value for k, c in results.cells.items()
                       if c.metric == "robust_accuracy" and c.suite in protocol.extra_suites},
            "n": results.cells["clean"].n,
            "classes": list(classes),
        }
    return out


def run_cell(cell: ProtocolRun, protocol: ProtocolConfig) -> dict[str, Any]:
    """Train and evaluate one cell; ``cell.json`` marks it finished (then it is only read)."""
    path = cell.run_dir / CELL_FILE
    spec = eval_spec(protocol)
    if path.is_file():
        record = read_json(path)
        if record.get("eval") == spec:
            log.info("%s: finished, skipped", cell.run_dir)
            return record
        log.info("%s: evaluation settings changed; evaluating again (training is kept)", cell.run_dir)
    log.info("cell %s", " ".join(f"{k}={v}" for k, v in cell.key().items()))
    train_cell(cell)
    record = {**cell.key(), "run_dir": str(cell.run_dir), "evals": evaluate_cell(cell, protocol),
              "eval": spec}
    write_json(path, record)
    return record


def eval_spec(protocol: ProtocolConfig) -> dict[str, Any]:
    """What a finished cell was evaluated with; a cell evaluated otherwise is evaluated again."""
    return json.loads(json.dumps({
        "eps": protocol.eps, "pgd_steps": protocol.pgd_steps, "pgd_alpha": protocol.pgd_alpha,
        "n_eval": protocol.n_eval, "seed": protocol.eval_seed, "suites": protocol.eval_config().suites,
        "options": protocol.suite_options}, default=str))


def cell_status(cell: ProtocolRun) -> str:
    """finished | trained (evaluation pending) | started (checkpoints) | todo."""
    from robustune.engine.checkpoint import latest_checkpoint

    if (cell.run_dir / CELL_FILE).is_file():
        return "finished"
    if (cell.run_dir / "model.safetensors").is_file():
        return "trained"
    return "started" if cell.run_dir.is_dir() and latest_checkpoint(cell.run_dir) else "todo"


def run_protocol(base: RunConfig, protocol: ProtocolConfig, out_dir: str | Path, *,
                 keep_going: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) every cell, then write ``table.md`` and ``table.json`` into ``out_dir``.

    With ``keep_going`` a failing cell is logged and the others still run; the tables then hold the
    finished cells and :class:`ProtocolError` names the failed ones.
    """
    from robustune.fewshot.table import write_tables

    cells = plan_cells(base, protocol, out_dir)
    log.info("few-shot protocol: %d cells into %s", len(cells), out_dir)
    records, failed = [], []
    for cell in cells:
        try:
            records.append(run_cell(cell, protocol))
        except Exception as exc:  # noqa: BLE001 - reported below, the other cells still run
            if not keep_going:
                raise
            log.error("cell %s failed: %s: %s", cell.run_dir, type(exc).__name__, exc)
            failed.append(f"{cell.run_dir} ({type(exc).__name__}: {exc})")
    write_tables(records, Path(out_dir))
    if failed:
        raise ProtocolError(f"{len(failed)} of {len(cells)} cells failed (run again to retry them): "
                            + "; ".join(failed))
    return records
