"""robustune compare: per-image outcomes in cells, exact McNemar, paired bootstrap, seeds, compute."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from robustune.eval.results import Cell, EvalResults, decode_outcomes, encode_outcomes
from robustune.eval.stats import mcnemar_exact, paired_bootstrap
from robustune.report.compare import compare_runs, holm, seed_folders
from robustune.report.compare_text import comparison_dict, format_comparison
from robustune.files import write_json


def test_outcomes_round_trip_compactly():
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 10_000):
        bits = rng.random(n) < 0.5
        text = encode_outcomes(torch.from_numpy(bits))
        assert np.array_equal(decode_outcomes(text, n), bits)
    assert len(encode_outcomes(np.ones(10_000, bool))) == 1668  # 1,250 bytes in base64
    cell = Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.tensor([True, False, True]))
    assert cell.outcome_array().tolist() == [True, False, True]
    back = EvalResults.from_dict(json.loads(json.dumps(EvalResults({}, {}, 0, {}, {"clean": cell}).to_dict())))
    assert back.cells["clean"].outcome_array().tolist() == [True, False, True]
    with pytest.raises(ValueError, match="bits"):
        decode_outcomes(text, 9)


def _pairs(only_a: int, only_b: int, both: int = 5, neither: int = 3):
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def test_mcnemar_hand_computed_and_scipy_binomtest():
    from scipy.stats import binomtest

    # b = 1, c = 6 discordant: p = 2 · (C(7,0) + C(7,1)) / 2^7 = 2 · 8 / 128 = 0.125, by hand
    res = mcnemar_exact(*_pairs(1, 6))
    assert (res["only_a"], res["only_b"], res["n"]) == (1, 6, 15)
    assert res["p_value"] == pytest.approx(0.125, abs=1e-12)
    assert res["difference"] == pytest.approx(-5 / 15)
    # 0 vs 10: p = 2 / 1024
    assert mcnemar_exact(*_pairs(10, 0))["p_value"] == pytest.approx(2 / 1024, rel=1e-9)
    # no discordant pair: p = 1 (nothing to resolve); a tie: p = 1
    assert mcnemar_exact(*_pairs(0, 0))["p_value"] == 1.0
    assert mcnemar_exact(*_pairs(4, 4))["p_value"] == 1.0
    for only_a, only_b in [(3, 12), (40, 61), (900, 1010), (2, 3000)]:
        ref = binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert mcnemar_exact(*_pairs(only_a, only_b))["p_value"] == pytest.approx(ref, rel=1e-9, abs=1e-300)
    with pytest.raises(ValueError, match="same images"):
        mcnemar_exact([1, 0], [1])


def test_paired_bootstrap_hand_checked():
    values = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] * 20)  # mean 0.2, n 200
    res = paired_bootstrap(values, samples=4000, seed=1)
    assert res["difference"] == pytest.approx(0.2)
    se = math.sqrt(0.2 * 0.8 / 200)  # the normal approximation of the mean of 0/1 values
    assert res["ci_low"] == pytest.approx(0.2 - 1.96 * se, abs=0.012)
    assert res["ci_high"] == pytest.approx(0.2 + 1.96 * se, abs=0.012)
    assert res["p_value"] < 0.01  # no resample has a mean ≤ 0
    flat = paired_bootstrap(np.array([0.5, -0.5] * 50), samples=1000)
    assert flat["ci_low"] < 0 < flat["ci_high"] and flat["p_value"] > 0.5
    assert paired_bootstrap(values, samples=500, seed=3) == paired_bootstrap(values, samples=500, seed=3)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


DATASET = {"name": "digits", "split": "test", "n_images": 40, "subset_seed": None}


def _write(folder, label, cells, run=None, dataset=DATASET):
    res = EvalResults(model={"run_name": label}, dataset=dict(dataset), seed=0, environment={},
                      cells={c.key: c for c in cells})
    res.save(folder / "eval" / "results.json")
    if run is not None:
        write_json(folder / "run.json", run)
    return folder


def _corruption_cells(outcomes: dict[tuple[str, int], np.ndarray]) -> list[Cell]:
    return [Cell.from_outcomes(f"corruptions/{c}/{s}", "corruptions", "top1_accuracy", torch.from_numpy(o),
                               corruption=c, severity=s) for (c, s), o in outcomes.items()]


def _compute(fwd, bwd, steps=100):
    return {"method": "m", "steps": steps, "compute": {"forward_passes_per_step": fwd,
            "backward_passes_per_step": bwd, "seconds_per_step": 0.5, "steps_counted": steps}}


def test_compare_pairs_cells_bootstraps_corruptions_and_flags_compute(tmp_path):
    from robustune.eval.ood_suites import corruption_summary_cells

    rng = np.random.default_rng(0)
    clean_a, clean_b = _pairs(12, 1, both=20, neither=7)  # 40 images: McNemar p = 2·(1+13)/2^13
    keys = [(c, s) for c in ("gaussian_noise", "fog") for s in (1, 3)]
    corr_a = {k: rng.random(40) < 0.8 for k in keys}
    corr_b = {k: rng.random(40) < 0.5 for k in keys}
    corr_ref = {k: rng.random(40) < 0.4 for k in keys}
    ref = _write(tmp_path / "erm", "erm", _corruption_cells(corr_ref))
    runs = {}
    for name, clean, corr, run in (("a", clean_a, corr_a, _compute(6, 6)), ("b", clean_b, corr_b, _compute(2, 2))):
        cells = [Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.from_numpy(clean))]
        cells += _corruption_cells(corr)
        res = EvalResults({}, dict(DATASET), 0, {}, {c.key: c for c in cells})
        cells += corruption_summary_cells(res, {"reference_results": str(ref)})
        runs[name] = _write(tmp_path / name, name, cells, run)
    (cmp,) = compare_runs([runs["a"], runs["b"]], samples=1000)
    by_key = {c.key: c for c in cmp.cells}
    clean = by_key["clean"]
    assert clean.test == "McNemar" and clean.detail == {"only_a": 12, "only_b": 1}
    assert clean.p_value == pytest.approx(2 * 14 / 2 ** 13)
    mca = by_key["corruptions/mean_corruption_accuracy"]
    expected = np.mean([corr_a[k].mean() - corr_b[k].mean() for k in keys])
    assert mca.difference == pytest.approx(expected) and mca.test == "paired bootstrap"
    assert mca.detail["ci95"][0] < expected < mca.detail["ci95"][1]
    mce = by_key["corruptions/mCE"]
    assert mce.test == "paired bootstrap" and mce.difference < 0  # A errs less: lower mCE
    assert mce.detail["ci95"][0] < mce.difference < mce.detail["ci95"][1]
    single = by_key["corruptions/fog/3"]
    assert single.family == "corruption cells" and single.test == "McNemar"
    assert "unequal compute: 3.00×" in cmp.compute_note
    text = format_comparison(cmp)
    assert "resolved (p = " in text and "not at equal compute" in text and "6 forward + 6 backward" in text
    assert json.loads(json.dumps(comparison_dict(cmp)))["cells"][0]["verdict"].startswith(("resolved", "not"))


def test_compare_refuses_to_pair_other_images_and_reads_old_per_sample(tmp_path):
    from robustune.eval.results import save_per_sample

    a = Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.ones(40, dtype=torch.bool))
    b = Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.zeros(40, dtype=torch.bool))
    _write(tmp_path / "a", "a", [a])
    _write(tmp_path / "b", "b", [b], dataset={**DATASET, "subset_seed": 3})
    (cmp,) = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert cmp.cells[0].test == "unpaired" and "different images" in cmp.cells[0].verdict
    b.outcomes = None  # results.json of an older robustune: outcomes only in per_sample/
    _write(tmp_path / "c", "c", [b])
    save_per_sample(tmp_path / "c" / "eval", "clean", correct=torch.zeros(40, dtype=torch.bool))
    (cmp,) = compare_runs([tmp_path / "a", tmp_path / "c"])
    assert cmp.cells[0].test == "McNemar" and cmp.cells[0].p_value == pytest.approx(2 / 2 ** 40)
    assert "compute not recorded" in cmp.compute_note


def test_cells_without_outcomes_are_shown_untested_and_same_named_runs_told_apart(tmp_path):
    """Detection cells (mAP, mPC) have no per-image outcome: side by side, "not tested", with the
    way to a paired comparison; two runs of one preset are labelled by their folders."""
    for name, value in (("method=det_finetune__seed=0", 0.456), ("method=gfn_det__seed=0", 0.458)):
        _write(tmp_path / name, "det_gfn_digits", [Cell("clean", "clean", "mAP", value, n=100),
                                                   Cell("corruptions/mPC", "corruptions", "mPC", value / 2)],
               run=_compute(1, 1))
    (cmp,) = compare_runs([tmp_path / "method=det_finetune__seed=0", tmp_path / "method=gfn_det__seed=0"])
    assert (cmp.a, cmp.b) == ("method=det_finetune__seed=0", "method=gfn_det__seed=0")
    by_key = {c.key: c for c in cmp.cells}
    assert set(by_key) == {"clean", "corruptions/mPC"}
    assert by_key["clean"].difference == pytest.approx(-0.002) and by_key["clean"].p_value is None
    assert "no image-by-image test for mPC" in by_key["corruptions/mPC"].verdict
    # units from robustune.report.units: a CE-style metric is already in percent, a fraction is ×100
    from robustune.report.compare_text import _value
    assert (_value("unnormalized_mCE", 42.2), _value("mPC", 0.229)) == ("42.2", "22.9%")
    assert len(cmp.compute) == 2


def test_compare_seed_folders(tmp_path):
    for name, accs in (("k=1", [0.9, 0.8, 0.85]), ("k=3", [0.8, 0.85, 0.7])):
        for seed, acc in enumerate(accs):
            _write(tmp_path / f"{name}__seed={seed}", name,
                   [Cell("clean", "clean", "top1_accuracy", acc, n=40)])
    assert sorted(seed_folders(tmp_path / "k=1")) == [0, 1, 2]
    (cmp,) = compare_runs([tmp_path / "k=1", tmp_path / "k=3"])
    (seeds,) = cmp.seeds
    assert (seeds.a_better, seeds.b_better) == (2, 1)
    assert seeds.mean == pytest.approx((0.1 - 0.05 + 0.15) / 3)
    assert seeds.std == pytest.approx(np.std([0.1, -0.05, 0.15], ddof=1))  # sample std, as the seed tables
    assert "A higher in 2, B higher in 1" in format_comparison(cmp)


def test_compare_cli_names_a_missing_evaluation(tmp_path, capsys):
    from robustune.cli import main

    (tmp_path / "a").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["compare", str(tmp_path / "a"), str(tmp_path / "a")])
    assert exc.value.code == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.parametrize("method,params,passes", [("erm", [], 1), ("pgd_at", ["method.params.steps=2"], 3),
                                                  ("trades", ["method.params.steps=2"], 4)])
def test_run_json_records_counted_passes_per_step(tmp_path, method, params, passes):
    """PGD-2 AT: 2 attack steps + 1 training pass, forward and backward; TRADES-2 adds its clean
    forward+backward (KL target and natural term) to the same; validation forwards are not counted."""
    from robustune.config import load_config
    from robustune.engine import train
    from robustune.files import read_json

    cfg = load_config(None, ["model.name=small_cnn", f"method.name={method}", *params, "train.max_steps=2",
                             "train.epochs=1", "data.batch_size=16"])
    train(cfg, tmp_path / "run")
    compute = read_json(tmp_path / "run" / "run.json")["compute"]
    assert compute["forward_passes_per_step"] == passes + (method == "trades")
    assert compute["backward_passes_per_step"] == passes
    assert compute["steps_counted"] == 2 and compute["seconds_per_step"] > 0


def test_report_findings_say_resolved_or_not_from_the_paired_test(tmp_path):
    from robustune.report import write_report

    a, b = _pairs(30, 2, both=300, neither=28)  # 360 images: 91.7 % vs 84.4 %, McNemar p ≈ 2e-7
    c = a.copy()
    c[:3] = False  # 3 images fewer than A: not resolved
    for name, o in (("gfn", a), ("nbr", b), ("pgd_at", c)):
        _write(tmp_path / name, name, [Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.from_numpy(o))],
               dataset={**DATASET, "n_images": 360})
    text = write_report([tmp_path / "gfn", tmp_path / "nbr"], tmp_path / "r.md").read_text()
    findings = text[text.index("## Findings"):text.index("## Summary")]
    p = mcnemar_exact(a, b)["p_value"]
    assert f"gfn vs nbr: resolved (p = {p:.2g}) (exact McNemar, n = 360)" in findings
    text = write_report([tmp_path / "gfn", tmp_path / "pgd_at"], tmp_path / "r2.md").read_text()
    assert "gfn vs pgd_at: not resolved at this n (p = 0.25) (exact McNemar, n = 360)" in text


def test_compare_few_shot_seed_folders_with_harmonic_mean(tmp_path):
    """Few-shot cells (``<method>/seedN/eval_base``, ``eval_new``): per-seed HM differences."""
    accs = {"erapt": {1: (0.8, 0.6), 2: (0.7, 0.7)}, "fap": {1: (0.8, 0.5), 2: (0.75, 0.7)}}
    for method, seeds in accs.items():
        for seed, (base, new) in seeds.items():
            for name, acc in (("base", base), ("new", new)):
                res = EvalResults({}, dict(DATASET), 0, {}, {"clean": Cell("clean", "clean", "top1_accuracy", acc, n=40)})
                res.save(tmp_path / method / f"seed{seed}" / f"eval_{name}" / "results.json")
    (cmp,) = compare_runs([tmp_path / "erapt", tmp_path / "fap"])
    by_key = {s.key: s for s in cmp.seeds}
    hm = by_key["HM:clean"]
    assert hm.differences[1] == pytest.approx(2 * .8 * .6 / 1.4 - 2 * .8 * .5 / 1.3)
    assert hm.differences[2] == pytest.approx(0.7 - 2 * .75 * .7 / 1.45)
    assert (hm.a_better, hm.b_better) == (1, 1)
    assert by_key["base:clean"].differences == pytest.approx({1: 0.0, 2: -0.05})
