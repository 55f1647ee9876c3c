"""``robustune reproduce``: the declared tables, their plans, a digits table end to end (local and
through submitit's local executor), and the sbatch parameters of the slurm launcher."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from robustune.cli import main
from robustune.reproduce import TABLES, describe, make_plan
from robustune.reproduce.launch import SlurmOptions, run_local, run_slurm, sbatch_text
from robustune.reproduce.report import write_report
from robustune.reproduce.spec import Prep

NAMES = ["gfn-table1", "gfn-table2", "gfn-table3", "gfn-table4", "gfn-table5",
         "erapt-base2new", "erapt-fewshot", "erapt-cross-dataset"]
OURS = ["gfn-fig2", "gfn-eta", "gfn-controls", "gfn-screen"]  # the analyses and controls beside them


def _cli(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_list_shows_every_table_at_both_scales(capsys):
    out = _cli(["reproduce", "--list"], capsys)
    for name in NAMES:
        rows = [line.split() for line in out.splitlines() if line.startswith(f"{name} ")]
        scales = {r[1] for r in rows}
        assert "paper" in scales and scales & {"digits", "digits_pairs"}, name
    for name in OURS:
        assert f"\n{name} " in out, name
    assert "cost model of docs/reproducing.md" in out


def test_digits_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path, capsys):
    out = _cli(["reproduce", "gfn-table3", "--scale", "digits", "--dry-run", "--out", str(tmp_path / "t3")], capsys)
    assert "prep  train    " in out and "prep  corrupt  digits" in out
    assert "suites per cell: clean, pgd, corruptions; eps 2/255, 8/255" in out
    assert out.count("  cell  todo") == 16  # the baseline once + (3 methods + 2 loss readings) × 3 seeds
    assert "stage 0" in out and "method=none__seed=0" in out
    assert not (tmp_path / "t3").exists()


@pytest.mark.parametrize("name", NAMES)
def test_paper_scale_dry_run(name: str, tmp_path: Path, capsys):
    out = _cli(["reproduce", name, "--scale", "paper", "--dry-run", "--data-root", "/datasets",
                "--out", str(tmp_path / name)], capsys)
    plan = make_plan(name, "paper", tmp_path / name, "/datasets")
    assert f"{len(plan.cells)} cells; estimated {plan.hours(1):.2f} h" in out
    assert plan.hours(8) <= plan.hours(1) and plan.hours(1) > 0
    for cell in plan.cells:  # each cell's config is complete: the preset with the data root filled in
        cfg = cell.fewshot.train_cfg if cell.fewshot is not None else plan.base_config()
        assert "/datasets" in str(cfg.data.root)


def test_unknown_table_is_one_line_with_the_closest_name(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "gfn-tabel3", "--dry-run"])
    assert exc.value.code == 2
    assert "gfn-table3" in capsys.readouterr().err


def _small_table3(out: Path):
    """GFN Table 3 at the digits scale, shrunk: ERM 1 epoch, 2 corruptions at severity 1, the
    baseline and GFN, one seed, 1 epoch (the machinery, not the result)."""
    table = TABLES["gfn-table3"]
    scale = table.scales["digits"]
    prep = (dataclasses.replace(scale.prep[0], sets=("train.epochs=1",)),
            Prep("corrupt", "digits-c_s135", "digits", severities="1", corruptions="gaussian_noise,motion_blur"))
    small = dataclasses.replace(scale, seeds=(0,), grid={"method": ("gfn",)}, prep=prep,
                                suites=("clean", "corruptions"), eps=("8/255",))
    return make_plan(table, small, out, sets=["train.epochs=1"])


def test_digits_table_end_to_end_is_resumable_and_compared_with_the_paper(tmp_path: Path):
    plan = _small_table3(tmp_path / "t3")
    records = run_local(plan, jobs=1)
    assert [r["values"]["method"] for r in records] == ["none", "gfn"]
    text = write_report(plan, records, "robustune reproduce gfn-table3 (test)")
    cmp = json.loads((plan.out / "reproduce.json").read_text())["comparison"]
    base_acc = next(c for c in cmp if c["paper_row"] == "Baseline" and c["our_metric"] == "clean")
    assert base_acc["paper"] == 76.3 and len(base_acc["ours"]) == 1
    assert base_acc["difference"] == pytest.approx(base_acc["ours_mean"] - 76.3)
    base_mce = next(c for c in cmp if c["paper_row"] == "Baseline" and c["our_metric"] == "corruptions/mCE")
    assert base_mce["ours_mean"] == pytest.approx(100.0)  # normalised by itself (the ERM model)
    assert next(c for c in cmp if c["paper_row"] == "Adv.")["ours"] == []  # not in this shrunk grid
    assert "| Ours | IN (Acc) ↑ | 79.9 |" in text and "not run" in text
    # resumable cell by cell: a second run reads the finished cells, trains nothing
    stamp = (plan.cells[1].run_dir / "model.safetensors").stat().st_mtime_ns
    assert run_local(plan, jobs=1) == records
    assert (plan.cells[1].run_dir / "model.safetensors").stat().st_mtime_ns == stamp
    assert "finished" in describe(plan)


def test_a_scale_is_a_union_of_grids_with_one_cell_per_name(tmp_path: Path):
    plan = make_plan("gfn-controls", "digits_pairs", tmp_path / "c")
    names = [c.name for c in plan.cells]
    assert len(names) == len(set(names)) == 1 + 3 * 3 + 3 * 3 + 3  # baseline, table 3's rows, 3 controls, Nbr. α^rank
    assert plan.axes == ["method", "target_sampling"]
    assert "method=nbr__target_sampling=alpha_rank__seed=2" in names and "method=erm__seed=0" in names
    fig2 = make_plan("gfn-fig2", "digits", tmp_path / "f")  # `digits` names the table's digits_pairs scale
    assert fig2.scale_name == "digits_pairs" and [c.name for c in fig2.cells] == ["method=none__seed=0"]


def test_tables_of_one_scale_share_their_preparation(tmp_path: Path, capsys):
    outs = [_cli(["reproduce", t, "--scale", s, "--dry-run", "--out", str(tmp_path / t)], capsys)
            for t, s in (("gfn-table3", "digits_pairs"), ("gfn-table4", "digits"), ("gfn-eta", "digits_pairs"))]
    for out in outs:  # the same ERM model and corrupted set, so their rows pair seed by seed
        assert "-> runs/reproduce/prep/digits_pairs/erm_digits_pairs" in out
        assert "-> runs/reproduce/prep/digits_pairs/digits_pairs-c_s15" in out
    det = _cli(["reproduce", "gfn-table2", "--scale", "digits-erm", "--dry-run", "--out", str(tmp_path / "d")], capsys)
    assert "-> runs/reproduce/prep/digits/erm_digits_noval" in det and "gfn_digits_backbone" not in det
    assert "post  det_severity" in det


def test_a_preparation_model_of_another_recipe_is_refused(tmp_path: Path):
    import yaml

    from robustune.config import ConfigError, load_config, to_dict
    from robustune.reproduce.launch import prepare

    plan = _small_table3(tmp_path / "t3")  # its ERM prep trains with train.epochs=1
    folder = plan.prep_dir / plan.prep[0].folder
    folder.mkdir(parents=True)
    other = load_config(plan.prep[0].source, ["train.epochs=7"])
    (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(other)))
    (folder / "model.safetensors").write_bytes(b"kept")
    with pytest.raises(ConfigError, match=r"another recipe \(train.epochs: 7 → 1\)"):
        prepare(plan)
    assert (folder / "model.safetensors").read_bytes() == b"kept"


def test_sbatch_parameters_come_from_the_declaration_and_the_options(tmp_path: Path):
    plan = make_plan("gfn-table1", "paper", tmp_path / "t1", "/datasets")
    text = sbatch_text(plan, SlurmOptions(partition="gpu-long", account="lab42", hours=3.5))
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --account=lab42", "#SBATCH --time=210",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB",
                 "#SBATCH --signal=USR2@90", "#SBATCH --job-name=robustune-gfn-table1"):
        assert line in text, line
    default = sbatch_text(plan, SlurmOptions())
    assert "#SBATCH --time=480" in default and "--partition" not in default  # the table's 8 h


def test_slurm_launcher_through_submitit_local_executor(tmp_path: Path):
    """The slurm path end to end on a digits table, with submitit's local executor (no SLURM)."""
    table = TABLES["erapt-base2new"]
    scale = table.scales["digits"]
    protocol = dict(scale.protocol, seeds=(1,), methods=("zeroshot", "configs/clip_tiny_digits_fap.yaml"),
                    shots=(2,), pgd_steps=1, n_eval=10, eps=("1/255",))
    small = dataclasses.replace(scale, protocol=protocol)
    plan = make_plan(table, small, tmp_path / "b2n", sets=["train.epochs=1"])
    records = run_slurm(plan, SlurmOptions(cluster="local", hours=0.2))
    assert sorted(r["method"] for r in records) == ["fap", "zeroshot"]
    assert all(set(r["evals"]) == {"base", "new"} for r in records)
    write_report(plan, records, "robustune reproduce erapt-base2new (test)")
    text = (plan.out / "reproduce.md").read_text()
    assert "No number of this table is stated" in text and (plan.out / "table.md").is_file()
    # the post steps ran on what is there: no ER-APT cell (no pair), FAP logs no loss weights
    assert "No pair has a finished seed in common yet." in text and "No run logged its loss weights." in text
