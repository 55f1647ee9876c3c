"""Every distinct training cell of the paper-scale tables (``robustune reproduce TABLE --scale
paper``) takes one optimizer step, as the plan builds it, on fake data of the layout it reads
(an ImageNet folder, COCO, CoOp's ImageNet), with random weights.

Distinct = the method, its loss reading, the model and the data set; cells that differ only in a
number (k, α, η, epochs, seed, shots) share one code path, and one of them is stepped. The
ViT-B models see 64 px images and the detector 64–96 px (ours, for test time only); the method,
optimiser, schedule, batch and prompts are the cell's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robustune.ablation import cell_config
from robustune.config import RunConfig, apply_overrides, from_dict, to_dict
from robustune.engine import train
from robustune.engine.metrics import read_metrics
from robustune.reproduce import TABLES, make_plan
from test_detection_presets import _fake_coco
from test_presets import NAMES, SMALL_IMAGES, WNIDS, _images, _random_init_once  # noqa: F401 (fixture)

COMMON = ["model.weights=null", "train.max_steps=1", "data.num_workers=0", "data.pin_memory=false",
          "train.log_every=1", "train.eval_every=0"]
DETECTION = ["model.kwargs.min_size=64", "model.kwargs.max_size=96", "data.batch_size=2",
             "data.eval_batch_size=2", "train.precision=fp32"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """One root holding every layout the paper tables read: {root}/imagenet (ImageNet folders and,
    beside them, CoOp's images/ + classnames.txt), {root}/coco."""
    root = tmp_path_factory.mktemp("paper_layout")
    for c, wnid in enumerate(WNIDS):
        _images(root / "imagenet" / "train" / wnid, 2, c)
        _images(root / "imagenet" / "val" / wnid, 1, 50 + c)
        _images(root / "imagenet" / "images" / "train" / wnid, 3, c)
        _images(root / "imagenet" / "images" / "val" / wnid, 1, 50 + c)
    (root / "imagenet" / "classnames.txt").write_text("".join(f"{w} {n}\n" for w, n in zip(WNIDS, NAMES)))
    _fake_coco(root / "coco")
    return root


def _key(cfg: RunConfig) -> tuple:
    return (cfg.method.name, cfg.method.params.get("loss"), cfg.model.name, cfg.data.name)


def distinct_training_cells(data_root: Path, out: Path) -> dict[tuple, tuple[str, RunConfig]]:
    """(method, loss, model, data set) → (where it comes from, its config), over every paper table:
    the grid cells, the few-shot cells on ImageNet and the preparation's training steps."""
    found: dict[tuple, tuple[str, RunConfig]] = {}
    for name, table in TABLES.items():
        if "paper" not in table.scales:
            continue
        plan = make_plan(name, "paper", out / name, str(data_root))
        configs: list[tuple[str, RunConfig]] = []
        if plan.scale.kind == "grid":
            base = to_dict(plan.base_config())
            configs += [(f"{name} {c.name}", cell_config(base, c.values, c.seed)) for c in plan.cells]
        else:
            configs += [(f"{name} {c.name}", c.fewshot.train_cfg) for c in plan.cells
                        if c.fewshot.dataset == "fewshot_imagenet" and c.fewshot.method != "zeroshot"]
        from robustune.config import load_config

        configs += [(f"{name} prep {p.folder}", load_config(p.source, list(p.sets))) for p in plan.prep
                    if p.kind == "train"]
        for where, cfg in configs:
            if cfg is not None:
                found.setdefault(_key(cfg), (where, cfg))
    return found


@pytest.fixture(scope="module")
def paper_cells(data_root, tmp_path_factory) -> dict[str, tuple[str, RunConfig]]:
    cells = distinct_training_cells(data_root, tmp_path_factory.mktemp("plans"))
    return {"/".join(str(x) for x in k): v for k, v in cells.items()}


def test_the_distinct_cells_cover_every_method_of_the_paper_tables(paper_cells):
    cells = {tuple(k.split("/")) for k in paper_cells}
    methods = {k[0] for k in cells}
    assert {"gfn", "adv_untargeted", "nbr", "det_finetune", "gfn_det"} <= methods
    assert {"coop", "fap", "apt", "erapt", "adv_vp", "adv_vlp", "adv_maple"} <= methods


def _cell_ids():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return sorted("/".join(str(x) for x in k) for k in distinct_training_cells(Path(tmp), Path(tmp)))


@pytest.mark.parametrize("cell", _cell_ids())
def test_each_distinct_paper_cell_takes_one_step_on_its_real_layout(cell, paper_cells, tmp_path):
    where, cfg = paper_cells[cell]
    overrides = list(COMMON)
    if cfg.method.name in ("det_finetune", "det_adv", "gfn_det"):
        overrides += DETECTION + ["model.init_from=null"]
    elif cfg.model.name.startswith("clip") or cfg.model.name == "open_clip":
        overrides.append(SMALL_IMAGES["clip"])
    else:
        overrides.append(SMALL_IMAGES["timm"])
    data = apply_overrides(to_dict(cfg), overrides)
    small = from_dict(RunConfig, data)
    assert small.method == cfg.method and small.optim == cfg.optim, where  # the cell's own method and optimiser
    run = tmp_path / "run"
    train(small, run)
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert steps == [1] and (run / "model.safetensors").exists(), where
