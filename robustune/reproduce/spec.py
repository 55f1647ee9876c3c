"""The data types a reproduced table is declared with, and the cost model of its cells.

A :class:`Table` names the paper's table, the numbers its text states (:class:`Reported`) and one
:class:`Scale` per size: ``paper`` (the paper's data and backbone, a GPU cluster) and ``digits``
(the built-in data sets and tiny models, this machine). A scale is either a grid of runs
(``kind="grid"``, run by :mod:`robustune.ablation`; a union of cartesian grids) or a few-shot
protocol (``kind="fewshot"``, run by :mod:`robustune.fewshot`), with :class:`Post` steps after the
cells (per-severity tables, GFN's Fig. 2, AutoAttack on a subset, ...). Strings may hold ``{out}``
(the table's output folder), ``{prep}`` (the preparation folder, ``--prep-root``: shared by the
tables of one scale, so they start from the same model and corrupted set) and ``{data_root}``
(``--data-root``), filled in when the table is planned.

The cost model (ours; docs/reproducing.md) counts forward+backward-equivalent image passes, using
the ratios measured by ``benchmarks/`` (docs/benchmarks.md), and divides by an assumed throughput of
the reference device:

    hours(cell) = (epochs · train_images · train_passes + eval_images · eval_passes) / throughput / 3600
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Training passes per image (forward+backward equivalents) relative to one ERM step, measured by
# benchmarks/step_cost.py (gfn 1.83×, nbr 1.82×, adv_untargeted 1.94×, pgd_at 9.43×) and
# benchmarks/erapt_cost.py (ER-APT 1.31× FAP at ViT-B-32); FAP/APT's PGD-2 step ≈ 3.5 is ours.
TRAIN_PASSES = {"erm": 1.0, "gfn": 1.83, "nbr": 1.82, "adv_untargeted": 1.94, "pgd_at": 9.43,
                "trades": 9.5, "zeroshot": 0.0, "coop": 1.0, "fap": 3.5, "apt": 3.0,
                "erapt": 3.5 * 1.31, "det_finetune": 1.0, "det_adv": 2.0, "gfn_det": 1.9}
# Evaluation passes per image and per evaluated copy (ours): a forward ≈ 1/3 of a forward+backward;
# PGD-n ≈ n passes; AutoAttack standard ≤ 51× PGD-100 (benchmarks/attack_throughput.py, upper bound).
FORWARD = 1 / 3
AUTOATTACK_PER_PGD100 = 51.0


@dataclass(frozen=True)
class Reported:
    """A number the paper's text states, and where ours is: a row of our table and a metric.

    ``row`` selects our row (grid values, or few-shot keys); ``metric`` is our column (a cell key
    of ``results.json`` such as ``clean``, or a few-shot column such as ``base natural``).
    """

    paper_row: str
    paper_column: str
    value: float
    row: dict[str, str]
    metric: str


@dataclass(frozen=True)
class Prep:
    """A step before the cells: ``train`` a starting model (``source`` = a preset) or ``corrupt`` a
    data set (``source`` = a dataset name) into ``{out}/<folder>``; skipped when already done."""

    kind: str
    folder: str
    source: str
    sets: tuple[str, ...] = ()
    severities: str = "1-5"
    corruptions: str = "common"
    options: tuple[tuple[str, Any], ...] = ()  # corrupt: data set options, e.g. (("n_images", 100),)


@dataclass(frozen=True)
class Post:
    """A step after the cells (ours; :mod:`robustune.reproduce.post`), skipped where its input is absent.

    ``severity``: per-severity tables of the grid (:mod:`robustune.report.severity`), each row minus
    the ``paired`` rows per seed; ``det_severity``: detection mAP per severity and corruption family;
    ``error_ranks``: GFN Fig. 2 on the prep model ``model`` at each severity; ``digit_share``: the
    similarity-free check of Fig. 2 on the baseline cell (digits_pairs); ``autoattack``: AutoAttack
    at ``eps`` on ``n`` images per side for the few-shot cells of ``seeds``; ``fewshot_paired``:
    per-seed paired HM differences of ``pairs`` (few-shot labels); ``weights``: ER-APT's loss weights.
    """

    kind: str
    severities: tuple[int, ...] = ()
    paired: tuple[str, ...] = ()
    model: str = ""
    n: int = 50
    eps: str = "1/255"
    seeds: tuple[int, ...] = (1,)
    pairs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Resources:
    """What one cell asks a SLURM scheduler for (``--launcher slurm``)."""

    gpus: int = 1
    cpus: int = 8
    mem_gb: int = 64
    hours: float = 12.0


@dataclass(frozen=True)
class Cost:
    """The sizes the cost model needs (see the module docstring); ``device`` names the reference."""

    train_images: int
    epochs: float
    eval_images: int
    eval_passes: float  # per evaluated image, over every suite of one evaluation
    throughput: float  # forward+backward image passes per second on ``device``
    device: str


@dataclass(frozen=True)
class Scale:
    """One size of a table: what to run, how to evaluate it, what it costs."""

    kind: str  # grid | fewshot
    config: str
    cost: Cost
    sets: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    grid: dict[str, tuple[str, ...]] = field(default_factory=dict)
    grids: tuple[dict[str, tuple[str, ...]], ...] = ()  # further cartesian grids (union; cells deduplicated)
    baseline: bool = False  # a ``method=none`` row (the starting model), evaluated once, first
    suites: tuple[str, ...] = ("clean",)
    eps: tuple[str, ...] = ("8/255",)
    pgd_steps: int = 10
    options: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    protocol: dict[str, Any] = field(default_factory=dict)  # fewshot: ProtocolConfig fields
    prep: tuple[Prep, ...] = ()
    post: tuple[Post, ...] = ()
    metric_map: dict[str, str] = field(default_factory=dict)  # a reported number's metric → ours here
    resources: Resources = Resources()
    note: str = ""


@dataclass(frozen=True)
class Table:
    """One table of a paper: its numbers and its scales."""

    name: str
    title: str
    paper: str
    scales: dict[str, Scale]
    reported: tuple[Reported, ...] = ()
    note: str = ""

