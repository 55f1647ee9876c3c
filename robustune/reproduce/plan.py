"""A declared table at one scale → its plan: preparation steps, cells and estimated cost.

Grid cells are :class:`robustune.ablation.GridPoint` runs (configs by
:func:`robustune.ablation.cell_config`); few-shot cells are :class:`robustune.fewshot.ProtocolRun`
runs (:func:`robustune.fewshot.protocol.plan_cells`). Stage 0 cells (the ``method=none`` baseline,
whose results normalise every CE) run before the others.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustune.config import EvalConfig, RunConfig, load_config, parse_number
from robustune.reproduce.spec import TRAIN_PASSES, Prep, Scale, Table
from robustune.reproduce.tables import get_scale, get_table, scale_name

REPO = Path(__file__).resolve().parents[2]


@dataclass
class PlanCell:
    """One cell: one run folder trained and evaluated, with its estimated cost."""

    name: str
    run_dir: Path
    stage: int
    hours: float
    values: dict[str, str] = field(default_factory=dict)  # grid cells
    seed: int = 0
    fewshot: Any = None  # the ProtocolRun of a few-shot cell


@dataclass
class Plan:
    table: Table
    scale_name: str
    scale: Scale
    out: Path
    data_root: str
    sets: tuple[str, ...]
    prep: list[Prep]
    cells: list[PlanCell]
    options: dict[str, Any]
    extra: tuple[str, ...] = ()  # the user's --set items (after the declared ones)
    prep_root: Path | None = None  # where the preparation steps write (default: OUT/prep)
    axes: list[str] = field(default_factory=list)  # grid tables: every axis of every grid, in order

    @property
    def prep_dir(self) -> Path:
        return self.prep_root if self.prep_root is not None else self.out / "prep"

    def hours(self, devices: int = 1) -> float:
        """Estimated wall hours on ``devices`` devices: longest-first greedy schedule of the cells
        (stage 0 first), the preparation steps not counted."""
        total = 0.0
        for stage in (0, 1):
            loads = [0.0] * max(1, devices)
            for h in sorted((c.hours for c in self.cells if c.stage == stage), reverse=True):
                heapq.heapreplace(loads, loads[0] + h)
            total += max(loads)
        return total

    def base_config(self) -> RunConfig:
        return load_config(config_path(self.scale.config), list(self.sets))

    def eval_config(self) -> EvalConfig:
        return EvalConfig(suites=list(self.scale.suites), eps=[parse_number(e) for e in self.scale.eps],
                          pgd_steps=self.scale.pgd_steps)


def config_path(path: str) -> Path:
    """A preset path: as given if it exists, else relative to the repository (``configs/…``)."""
    p = Path(path)
    return p if p.exists() or p.is_absolute() else REPO / p


def fill(value: Any, out: Path, data_root: str, prep: Path | None = None) -> Any:
    """``{out}``, ``{prep}`` and ``{data_root}`` placeholders of a declared string (others unchanged)."""
    if not isinstance(value, str):
        return value
    return value.format(out=out, data_root=data_root, prep=prep if prep is not None else out / "prep")


def make_plan(table: str | Table, scale: str | Scale, out: str | Path, data_root: str = "data",
              sets: list[str] | None = None, prep_root: str | Path | None = None) -> Plan:
    """The plan of ``table`` at ``scale`` (a name, or a :class:`Scale` — e.g. a shrunk one in a test).

    ``prep_root``: where the preparation steps write (the starting models, the corrupted sets);
    default ``OUT/prep``. Tables of one scale given the same folder start from the same models.
    """
    t = get_table(table) if isinstance(table, str) else table
    s = get_scale(t, scale) if isinstance(scale, str) else scale
    name = scale_name(t, scale) if isinstance(scale, str) else "custom"
    out = Path(out)
    prep_dir = Path(prep_root) if prep_root is not None else out / "prep"
    f = lambda x: fill(x, out, data_root, prep_dir)  # noqa: E731
    fixed = tuple(f(x) for x in s.sets) + tuple(sets or ())
    prep = [dataclasses.replace(p, source=str(config_path(p.source)) if p.kind == "train" else p.source,
                                sets=tuple(f(x) for x in p.sets)) for p in s.prep]
    options = {k: f(v) for k, v in s.options.items()}
    plan = Plan(t, name, s, out, data_root, fixed, prep, [], options, tuple(sets or ()),
                Path(prep_root) if prep_root is not None else None)
    plan.cells = _fewshot_cells(plan) if s.kind == "fewshot" else _grid_cells(plan)
    return plan


def _cell_hours(scale: Scale, method: str, evaluations: int = 1) -> float:
    """Estimated hours of one cell: training passes plus ``evaluations`` evaluations (a few-shot
    cell counts its own, e.g. base and new; a grid cell is evaluated once)."""
    c = scale.cost
    train = 0.0 if method == "none" else c.epochs * c.train_images * TRAIN_PASSES.get(method, 1.0)
    return (train + evaluations * c.eval_images * c.eval_passes) / c.throughput / 3600


def _grid_cells(plan: Plan) -> list[PlanCell]:
    from robustune.ablation import GridPoint

    s = plan.scale
    grids = ([s.grid] if s.grid else []) + [g for g in s.grids if g]
    plan.axes = list(dict.fromkeys(a for g in grids for a in g)) or ["method"]
    cells, names = [], set()
    if s.baseline:  # the starting model unchanged: evaluated once, it normalises every CE
        point = GridPoint({"method": "none"}, s.seeds[0])
        cells.append(PlanCell(point.name, plan.out / "cells" / point.name, 0, _cell_hours(s, "none"),
                              point.values, point.seed))
        plan.options["reference_results"] = str(cells[0].run_dir / "eval" / "results.json")
    for grid in grids:
        axes = list(grid)
        for combo in itertools.product(*[grid[a] for a in axes]):
            for seed in s.seeds:
                point = GridPoint(dict(zip(axes, combo)), seed)
                if point.name in names:
                    continue
                names.add(point.name)
                method = point.values.get("method", "").split(":")[0] or _method_of(plan)
                cells.append(PlanCell(point.name, plan.out / "cells" / point.name, 1,
                                      _cell_hours(s, method), point.values, seed))
    return cells


def _method_of(plan: Plan) -> str:
    import yaml

    return yaml.safe_load(config_path(plan.scale.config).read_text())["method"]["name"]


def protocol_config(plan: Plan):
    """The :class:`robustune.fewshot.ProtocolConfig` of a few-shot scale."""
    from robustune.fewshot import ProtocolConfig

    p = dict(plan.scale.protocol)
    p["eps"] = [parse_number(e) for e in p.get("eps", ("1/255",))]
    p["methods"] = [str(config_path(m)) if m.endswith(".yaml") else m for m in p.get("methods", ())]
    lists = ("datasets", "settings", "shots", "seeds", "extra_suites")
    p.update({k: list(p[k]) for k in lists if k in p})
    p["suite_options"] = {k: fill(v, plan.out, plan.data_root) for k, v in p.get("suite_options", {}).items()}
    return ProtocolConfig(**p, overrides=list(plan.sets))


def _fewshot_cells(plan: Plan) -> list[PlanCell]:
    from robustune.fewshot.protocol import plan_cells

    cells = []
    for run in plan_cells(plan.base_config(), protocol_config(plan), plan.out / "cells"):
        hours = _cell_hours(plan.scale, run.train_cfg.method.name, len(run.evals))
        cells.append(PlanCell(str(run.run_dir.relative_to(plan.out / "cells")), run.run_dir, 1, hours,
                              dict(run.key()), run.seed, run))
    return cells


def describe(plan: Plan) -> str:
    """The plan as text: preparation, cells with status and cost, suites, the estimate."""
    s = plan.scale
    lines = [f"{plan.table.name} ({plan.scale_name} scale): {plan.table.title}",
             f"  output: {plan.out}   base preset: {s.config}   overrides: {', '.join(plan.sets) or '-'}"]
    for p in plan.prep:
        lines.append(f"  prep  {p.kind:8s} {p.source} -> {plan.prep_dir / p.folder}")
    if s.kind == "grid":
        lines.append(f"  suites per cell: {', '.join(s.suites)}; eps {', '.join(s.eps)}; "
                     f"options {plan.options or '-'}")
    else:
        pc = protocol_config(plan)
        lines.append(f"  suites per evaluation: {', '.join(pc.eval_config().suites)}, PGD-{pc.pgd_steps}; "
                     f"options {pc.suite_options or '-'}")
    for c in plan.cells:
        lines.append(f"  cell  {cell_status(c):9s} stage {c.stage}  {c.hours:8.3f} h  {c.name}")
    for p in s.post:
        lines.append(f"  post  {p.kind:14s} {post_text(p)}")
    dev = s.cost.device
    lines.append(f"  {len(plan.cells)} cells; estimated {plan.hours(1):.2f} h on {dev}, "
                 f"{plan.hours(8):.2f} h on 8 of them (cost model of docs/reproducing.md; prep not counted)")
    if s.note or plan.table.note:
        lines.append(f"  note: {' '.join(x for x in (plan.table.note, s.note) if x)}")
    return "\n".join(lines)


def cell_status(cell: PlanCell) -> str:
    """finished | trained | started | todo (few-shot cells: the protocol's own status)."""
    if cell.fewshot is not None:
        from robustune.fewshot.protocol import cell_status as fewshot_status

        return fewshot_status(cell.fewshot)
    if (cell.run_dir / CELL_FILE).is_file():
        return "finished"
    if (cell.run_dir / "model.safetensors").is_file():
        return "trained"
    return "started" if cell.run_dir.is_dir() else "todo"


CELL_FILE = "reproduce_cell.json"


def post_text(p) -> str:
    """One line on what a :class:`robustune.reproduce.spec.Post` step writes."""
    if p.kind == "severity":
        paired = f", each row minus {', '.join(p.paired)} per seed" if p.paired else ""
        return f"per-severity tables at severity {', '.join(map(str, p.severities))}{paired} -> OUT/severity_<s>.md"
    if p.kind == "det_severity":
        return "detection mAP per severity and corruption family -> OUT/severity.md"
    if p.kind == "error_ranks":
        return f"GFN Fig. 2 on prep/{p.model} at severity {', '.join(map(str, p.severities))} -> OUT/fig2_s<s>/"
    if p.kind == "digit_share":
        return f"mistakes keeping a digit, baseline cell, severity {', '.join(map(str, p.severities))} -> OUT/fig2_s<s>/"
    if p.kind == "autoattack":
        return f"AutoAttack at {p.eps} on {p.n} images per side, seeds {list(p.seeds)} -> OUT/autoattack.md"
    if p.kind == "fewshot_paired":
        return f"per-seed paired HM differences of {len(p.pairs)} pairs -> OUT/paired.md"
    if p.kind == "weights":
        return "range of the logged loss weights -> OUT/weights.md"
    return p.kind
