import json

from robustune.ablation import cell_config, parse_grid, summarise
from robustune.cli import main
from robustune.config import load_config, to_dict


def test_cell_config_maps_axes_and_drops_foreign_params():
    base = to_dict(load_config("configs/gfn_digits.yaml"))
    cfg = cell_config(base, {"method": "gfn:neighbor_margin", "k": "5", "optim.lr": "0.01"}, seed=2)
    assert cfg.method.name == "gfn" and cfg.method.params["loss"] == "neighbor_margin"
    assert cfg.method.params["k"] == 5 and cfg.optim.lr == 0.01 and cfg.train.seed == 2
    erm = cell_config(base, {"method": "erm"}, seed=0)
    assert erm.method.name == "erm" and erm.method.params == {}
    adv = cell_config(base, {"method": "adv_untargeted"}, seed=0)
    assert adv.method.params == {"eta": base["method"]["params"]["eta"]}  # shared param kept
    assert cell_config(base, {"method": "none"}, seed=0) is None
    assert parse_grid(["k=1,3", "alpha=0.5"]) == {"k": ["1", "3"], "alpha": ["0.5"]}


def test_summary_mean_and_std_over_seeds():
    rows = [{"values": {"k": "1"}, "metrics": {"clean": 0.5}}, {"values": {"k": "1"}, "metrics": {"clean": 0.7}}]
    table = summarise(rows, ["k"])
    assert "| 1 | 60.0 ± 14.1 | 2 |" in table


def test_ablate_cli_runs_grid_and_skips_finished_cells(tmp_path):
    base = ["--set", "model.name=small_cnn", "--set", "data.train_subset=64", "--set", "data.batch_size=32",
            "--set", "train.epochs=1", "--set", "train.eval_every=0"]
    try:
        main(["train", "configs/erm_digits.yaml", *base, "--out", str(tmp_path / "erm")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    args = ["ablate", "configs/gfn_digits.yaml", *base, "--set", f"model.init_from={tmp_path / 'erm'}",
            "--grid", "method=none,gfn", "--grid", "k=1,3", "--suite", "clean", "--out", str(tmp_path / "abl")]
    for _ in range(2):
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code in (0, None)
        if _ == 0:
            stamp = (tmp_path / "abl" / "method=gfn__k=3__seed=0" / "model.safetensors").stat().st_mtime_ns
    data = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert len(data["rows"]) == 4 and all("clean [top1_accuracy]" in r["metrics"] for r in data["rows"])
    assert (tmp_path / "abl" / "method=gfn__k=3__seed=0" / "model.safetensors").stat().st_mtime_ns == stamp
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| gfn | 3 |" in table and "| none | 1 |" in table


def test_unchanged_baseline_is_evaluated_once_for_all_seeds(trained_tiny_run, tmp_path):
    from robustune.ablation import run_ablation
    from robustune.config import EvalConfig

    base = load_config("configs/gfn_digits.yaml", [f"model.init_from={trained_tiny_run}"])
    res = run_ablation(base, {"method": ["none"]}, tmp_path, [0, 1, 2], EvalConfig(suites=["clean"]))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["method=none__seed=0"]
    assert len(res.rows) == 3 and len({r["run"] for r in res.rows}) == 1
    assert "| none | 97" in res.table_md and "± 0.0" in res.table_md
