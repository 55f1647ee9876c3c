"""Grids of runs (ablations): train each cell, evaluate it, and tabulate (GFN Tables 3–5 shape).

A grid is a list of ``key=v1,v2,...`` axes. A key without a dot is a method parameter
(``k`` → ``method.params.k``); a dotted key is any config path (``optim.lr``). The special axis
``method`` takes method names, optionally with a loss reading (``gfn:neighbor_margin``), and
``none`` for the starting model without fine-tuning (the paper's "Baseline" row). Method
parameters of the base config that another method does not accept are dropped for that cell.
Cells run sequentially; a finished cell (its ``results.json`` has every requested cell) is skipped,
and an interrupted one resumes from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustune.config import ConfigError, EvalConfig, RunConfig, apply_overrides, from_dict, to_dict
from robustune.files import write_json, write_text_atomic
from robustune.report.seeds import markdown_table, seeds_text
from robustune.report.units import in_percent

log = logging.getLogger(__name__)


@dataclass
class GridPoint:
    """One point of the grid (a value per axis) with one seed: one run of the ablation."""

    values: dict[str, str]
    seed: int

    @property
    def name(self) -> str:
        parts = [f"{k}={v}" for k, v in self.values.items()] + [f"seed={self.seed}"]
        return "__".join(p.replace("/", "_").replace(":", "-") for p in parts)


@dataclass
class AblationResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    table_md: str = ""


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"grid axis {item!r} must look like key=v1,v2 (e.g. k=10,20,30)")
        key, values = item.split("=", 1)
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def cell_config(base: dict[str, Any], values: dict[str, str], seed: int) -> RunConfig | None:
    """The RunConfig of one cell, or ``None`` for the no-fine-tuning baseline."""
    data = yaml.safe_load(yaml.safe_dump(base))
    method = values.get("method")
    if method == "none":
        return None
    if method:
        from robustune.methods import METHODS

        name, _, loss = method.partition(":")
        accepted = {f.name for f in dataclasses.fields(METHODS.get(name).Params)}
        params = {k: v for k, v in data.get("method", {}).get("params", {}).items() if k in accepted}
        if loss:
            params["loss"] = loss
        data["method"] = {"name": name, "params": params}
    overrides = [f"{k if '.' in k else 'method.params.' + k}={v}" for k, v in values.items()
                 if k != "method"]
    data = apply_overrides(data, overrides + [f"train.seed={seed}"])
    return from_dict(RunConfig, data)


def _metric_columns(results) -> dict[str, float]:
    out = {}
    for key, cell in results.cells.items():
        out[f"{key} [{cell.metric}]"] = cell.value
    return out


def run_cell(cfg: RunConfig | None, base: RunConfig, run_dir: Path, ecfg: EvalConfig,
             options: dict[str, Any]):
    from robustune.engine import train
    from robustune.runs.build import resolve_weights_file
    from robustune.runs.evaluate import evaluate_run

    if cfg is None:  # baseline: the starting model itself
        if not base.model.init_from:
            raise ConfigError("method=none needs model.init_from (the model to evaluate unchanged)")
        source = resolve_weights_file(base.model.init_from).parent
        model_cfg = from_dict(RunConfig, yaml.safe_load((source / "config.yaml").read_text()))
        model_dir = source
    else:
        if not (run_dir / "model.safetensors").exists():
            train(cfg, run_dir, resume=True)
        model_cfg, model_dir = cfg, run_dir
    return evaluate_run(model_dir, ecfg, run_dir / "eval", cfg=model_cfg, options=options).results


def headline(metric: str) -> bool:
    """Columns of the default table: not the per-(corruption, severity) cells nor per-corruption CE."""
    from robustune.eval.ood_suites import parse_corruption_key

    key = metric.split(" [")[0]
    if key.startswith("corruptions/CE/"):
        return False
    return parse_corruption_key(key) is None


def select_columns(metrics: list[str], patterns: list[str] | None) -> list[str]:
    """Headline metrics, or those matching any of ``patterns`` (wildcards on the cell key)."""
    import fnmatch

    if not patterns:
        return [m for m in metrics if headline(m)]
    return [m for m in metrics if any(fnmatch.fnmatch(m.split(" [")[0], p) for p in patterns)]


def summarise(rows: list[dict[str, Any]], axes: list[str], columns: list[str] | None = None) -> str:
    """Markdown table: one row per grid point, mean ± std over seeds per metric (in %).

    Accuracies are scaled to %; CE-style metrics (:data:`robustune.report.units.PERCENT_METRICS`)
    already are.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row["values"].get(a, "–") for a in axes), []).append(row)
    metrics: list[str] = []
    for row in rows:
        metrics += [m for m in row["metrics"] if m not in metrics]
    metrics = select_columns(metrics, columns)
    table = []
    for key, group in groups.items():
        cells = [seeds_text([in_percent(m.split("[")[-1].rstrip("]"), r["metrics"][m])
                             for r in group if m in r["metrics"]]) for m in metrics]
        table.append(list(key) + cells + [str(len(group))])
    return markdown_table(axes + metrics + ["seeds"], table) + "\n"


def run_ablation(base: RunConfig, grid: dict[str, list[str]], out: Path, seeds: list[int],
                 ecfg: EvalConfig, options: dict[str, Any] | None = None,
                 columns: list[str] | None = None) -> AblationResult:
    """Run every cell of ``grid`` × ``seeds`` into ``out`` and write ``ablation.md`` / ``.json``."""
    out = Path(out)
    axes = list(grid)
    base_dict = to_dict(base)
    result = AblationResult()
    combos = list(itertools.product(*[grid[a] for a in axes])) or [()]
    for combo in combos:
        baseline = None  # (run folder, results) of a no-fine-tuning cell: the same for every seed
        for seed in seeds:
            cell = GridPoint(dict(zip(axes, combo)), seed)
            cfg = cell_config(base_dict, cell.values, seed)
            if cfg is None and baseline is not None:
                run, res = baseline
                log.info("ablation cell %s: the unchanged starting model, evaluated once (%s)", cell.name, run)
            else:
                log.info("ablation cell %s", cell.name)
                run, res = out / cell.name, run_cell(cfg, base, out / cell.name, ecfg, options or {})
                baseline = (run, res) if cfg is None else None
            result.rows.append({"values": cell.values, "seed": seed, "run": str(run),
                                "metrics": _metric_columns(res)})
            write_json(out / "ablation.json", {"axes": axes, "seeds": seeds, "rows": result.rows})
    result.table_md = summarise(result.rows, axes, columns)
    axes_text = "; ".join(f"{a} ∈ {{{', '.join(grid[a])}}}" for a in axes)
    header = (f"# Ablation of `{base.name}`\n\nGrid: {axes_text}; seeds {seeds}. "
              "Values in %, mean ± std over seeds. Metric names in brackets; every cell of every "
              "run is in ablation.json.\n\n")
    write_text_atomic(out / "ablation.md", header + result.table_md)
    return result
