"""The few-shot protocol: the grid of cells, the tables, and `robustune fewshot` end to end + resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from robustune.cli import main
from robustune.config import load_config
from robustune.fewshot import ProtocolConfig, harmonic_mean, plan_cells, summarise
from robustune.fewshot.table import markdown_tables

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fewshot_digits_erm.yaml"


def _record(seed: int, base: float, new: float, base_pgd: float, new_pgd: float) -> dict:
    ev = lambda nat, pgd: {"natural": nat, "pgd": {"1/255": pgd}, "n": 10, "classes": []}  # noqa: E731
    return {"setting": "base2new", "dataset": "digits", "shots": 16, "method": "fap", "seed": seed,
            "evals": {"base": ev(base, base_pgd), "new": ev(new, new_pgd)}}


def test_table_mean_std_and_harmonic_mean_by_hand():
    rows = summarise([_record(1, 0.8, 0.4, 0.5, 0.1), _record(2, 0.6, 0.6, 0.3, 0.3)])
    (row,) = rows
    base = row["metrics"]["base"]["natural"]
    assert base["mean"] == pytest.approx(70.0) and base["std"] == pytest.approx(10.0)
    hm = row["metrics"]["hm"]["natural"]
    assert hm["values"] == pytest.approx([100 * 2 * 0.8 * 0.4 / 1.2, 60.0])
    assert hm["hm_of_means"] == pytest.approx(100 * harmonic_mean(0.7, 0.5))
    assert harmonic_mean(0.0, 0.0) == 0.0
    md = markdown_tables(rows)
    assert "| digits | 16 | fap | 2 | 70.0 ± 10.0 | 50.0 ± 10.0 | 58.3 ± 3.3 |" in md
    assert "HM PGD 1/255" in md


def test_table_includes_extra_robust_suites_and_cross_average():
    recs = []
    for seed, (src, tgt, aa) in enumerate([(0.9, 0.5, 0.2), (0.7, 0.3, 0.4)]):
        def ev(nat: float, aa: float = aa) -> dict:
            return {"natural": nat, "pgd": {"1/255": nat / 2}, "robust": {"aa/eps=1/255": aa}}

        recs.append({"setting": "cross", "dataset": "digits", "shots": 4, "method": "fap", "seed": seed,
                     "evals": {"digits": ev(src), "other": ev(tgt), "third": ev(tgt + 0.1)}})
    (row,) = summarise(recs)
    avg = row["metrics"]["targets_average"]
    assert avg["natural"]["values"] == pytest.approx([55.0, 35.0])
    assert avg["aa/eps=1/255"]["mean"] == pytest.approx(30.0)
    md = markdown_tables([row])
    assert "| digits | 4 | fap | 2 | average of targets | 45.0 ± 10.0 |" in md
    assert "aa/eps=1/255: 30.0 ± 10.0" in md and "| digits | 80.0 ± 10.0 | PGD 1/255: 40.0 ± 5.0 /" in md


def test_plan_cells_grid_seed_zero_and_cross_targets(tmp_path: Path):
    base = load_config(CONFIG, ["method.params={}"])
    proto = ProtocolConfig(datasets=["digits", "caltech101"], seeds=[0, 3], settings=["base2new", "cross"],
                           shots=[4], methods=["erm", "pgd_at"])
    cells = plan_cells(base, proto, tmp_path)
    b2n = [c for c in cells if c.setting == "base2new"]
    cross = [c for c in cells if c.setting == "cross"]
    assert len(b2n) == 2 * 2 * 2 and len(cross) == 2 * 2  # cross trains on the first dataset only
    cell = b2n[0]
    assert cell.seed == 0 and cell.train_cfg.train.seed == 0 and cell.train_cfg.data.options["seed"] == 0
    assert cell.train_cfg.data.name == "fewshot" and cell.train_cfg.data.shots is None
    assert cell.train_cfg.data.options == {"source": "digits", "subset": "base", "shots": 4, "seed": 0}
    assert cell.evals["new"].data.options["subset"] == "new"
    assert cell.run_dir == tmp_path / "base2new" / "digits" / "4shot" / "erm" / "seed0"
    c = cross[0]
    assert list(c.evals) == ["digits", "caltech101"]
    assert c.evals["caltech101"].data.options == {"source": "caltech101", "subset": "all", "shots": None,
                                                  "seed": 0}
    assert {x.method for x in cells} == {"erm", "pgd_at"}
    with pytest.raises(ValueError, match="base2new"):
        plan_cells(base, ProtocolConfig(settings=["base2nwe"]), tmp_path)
    with pytest.raises(KeyError, match="pgd"):
        plan_cells(base, ProtocolConfig(extra_suites=["pgdd"]), tmp_path)


def _cli(out: Path, *extra: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fewshot", str(CONFIG), "--seeds", "0", "--shots", "1", "--settings", "base2new",
              "--pgd-steps", "1", "--n-eval", "10", "--out", str(out), "--set", "data.batch_size=5",
              "--set", "train.eval_every=0",
              *extra])
    assert exc.value.code in (0, None)


def test_fewshot_command_end_to_end_and_resume(tmp_path: Path, monkeypatch):
    out = tmp_path / "proto"
    _cli(out)
    run = out / "base2new" / "digits" / "1shot" / "erm" / "seed0"
    for name in ("model.safetensors", "cell.json", "eval_base/results.json", "eval_new/results.json"):
        assert (run / name).is_file(), name
    md = (out / "table.md").read_text()
    assert "### Base-to-new" in md and "| digits | 1 | erm | 1 |" in md
    cfg = load_config(run / "config.yaml")
    assert cfg.data.options["subset"] == "base" and cfg.data.options["shots"] == 1

    import robustune.engine as engine

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell must not be trained again")

    monkeypatch.setattr(engine, "train", no_training)
    stamp = (run / "cell.json").stat().st_mtime_ns
    _cli(out)  # finished: only the tables are rewritten
    assert (run / "cell.json").stat().st_mtime_ns == stamp

    (run / "cell.json").unlink()  # interrupted during evaluation: only "new" is measured again
    (run / "eval_new" / "results.json").unlink()
    base_stamp = (run / "eval_base" / "results.json").stat().st_mtime_ns
    _cli(out)
    assert (run / "cell.json").is_file() and (run / "eval_new" / "results.json").is_file()
    import json

    record = json.loads((run / "cell.json").read_text())
    assert record["evals"]["new"]["classes"] == ["five", "six", "seven", "eight", "nine"]
    assert record["evals"]["base"]["classes"] == ["zero", "one", "two", "three", "four"]
    for ev in record["evals"].values():
        assert 0 <= ev["pgd"]["1/255"] <= ev["natural"] <= 1 and ev["n"] == 10
    assert (run / "eval_base" / "results.json").stat().st_mtime_ns >= base_stamp
    assert not math.isnan(json.loads((out / "table.json").read_text())["rows"][0]["metrics"]["hm"]
                          ["natural"]["mean"])

    _cli(out, "--eps", "1/255,2/255")  # new evaluation settings: evaluated again, not trained again
    record = json.loads((run / "cell.json").read_text())
    assert set(record["evals"]["new"]["pgd"]) == {"1/255", "2/255"}
    assert "PGD 2/255" in (out / "table.md").read_text()


def test_interrupted_training_resumes_from_checkpoint(tmp_path: Path, monkeypatch):
    import robustune.engine as engine
    from robustune.fewshot.protocol import train_cell

    cell = plan_cells(load_config(CONFIG), ProtocolConfig(seeds=[0], shots=[1]), tmp_path)[0]
    calls = []
    monkeypatch.setattr(engine, "train", lambda cfg, run_dir, resume=False, **kw: calls.append(resume))
    train_cell(cell)
    monkeypatch.setattr("robustune.engine.checkpoint.latest_checkpoint", lambda d: d / "checkpoints")
    train_cell(cell)
    assert calls == [False, True]


def test_fewshot_command_reports_bad_input(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fewshot", str(CONFIG), "--settings", "zeroshot", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "base2new, cross, fewshot" in capsys.readouterr().err


def test_keep_going_tabulates_finished_cells_and_names_failed_ones(tmp_path: Path, monkeypatch):
    import robustune.fewshot.protocol as protocol

    def fake_run_cell(cell, proto):
        if cell.seed == 2:
            raise RuntimeError("disk full")
        return _record(cell.seed, 0.8, 0.4, 0.5, 0.1)

    monkeypatch.setattr(protocol, "run_cell", fake_run_cell)
    proto = ProtocolConfig(seeds=[1, 2, 3], shots=[16])
    with pytest.raises(RuntimeError, match="disk full"):  # default: stop at the first failure
        protocol.run_protocol(load_config(CONFIG), proto, tmp_path)
    with pytest.raises(protocol.ProtocolError, match=r"1 of 3 cells failed.*seed2.*disk full"):
        protocol.run_protocol(load_config(CONFIG), proto, tmp_path, keep_going=True)
    assert "| digits | 16 | fap | 2 | 80.0 ± 0.0 |" in (tmp_path / "table.md").read_text()


def test_dry_run_lists_cells_without_running(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fewshot", str(CONFIG), "--seeds", "0,1", "--settings", "fewshot,base2new", "--shots", "1,2",
              "--out", str(tmp_path / "p"), "--dry-run"])
    assert exc.value.code in (0, None)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("todo")]
    assert len(lines) == 2 * 2 * 2 and not (tmp_path / "p").exists()
    assert any("base2new/digits/2shot/erm/seed0  evaluations: base, new" in ln for ln in lines)


def test_shards_share_the_grid_and_the_last_one_tabulates_every_cell(tmp_path: Path, monkeypatch):
    import json

    import robustune.fewshot.protocol as protocol

    ran = []

    def fake_run_cell(cell, proto):
        ran.append(cell.seed)
        record = {**_record(cell.seed, 0.8, 0.4, 0.5, 0.1), "eval": protocol.eval_spec(proto)}
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        (cell.run_dir / protocol.CELL_FILE).write_text(json.dumps(record))
        return record

    monkeypatch.setattr(protocol, "run_cell", fake_run_cell)
    proto = ProtocolConfig(seeds=[1, 2, 3], shots=[16])
    protocol.run_protocol(load_config(CONFIG), proto, tmp_path, shard=(0, 2))
    assert ran == [1, 3] and "| 2 | 80.0 ± 0.0 |" in (tmp_path / "table.md").read_text()  # its 2 cells
    records = protocol.run_protocol(load_config(CONFIG), proto, tmp_path, shard=(1, 2))
    assert ran == [1, 3, 2] and [r["seed"] for r in records] == [1, 2, 3]  # every cell, in grid order
    assert "| 3 | 80.0 ± 0.0 |" in (tmp_path / "table.md").read_text()


def test_fewshot_nproc_runs_cells_in_parallel_processes(tmp_path: Path):
    out = tmp_path / "proto"
    _cli(out, "--seeds", "0,1", "--nproc", "2")
    for seed in (0, 1):
        assert (out / "base2new" / "digits" / "1shot" / "erm" / f"seed{seed}" / "cell.json").is_file()
    assert "| digits | 1 | erm | 2 |" in (out / "table.md").read_text()
