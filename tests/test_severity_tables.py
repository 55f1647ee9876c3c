"""robustune.report.severity: one severity's mCE per row and the per-seed paired differences
(computed by hand), read from ablate-style cell folders; detection mAP per severity and family."""

from __future__ import annotations

import json

import pytest

from robustune.corruptions.registry import COMMON_CORRUPTIONS, SUBSETS
from robustune.eval.ood_suites import corruption_key
from robustune.report.severity import detection_severity_table, read_rows, severity_tables


def _metrics(error: float) -> dict:
    metrics = {f"{corruption_key(c, 1)} [top1_accuracy]": 1 - error for c in COMMON_CORRUPTIONS}
    metrics["clean [top1_accuracy]"] = 0.9
    return metrics


def _row(method: str, seed: int, error: float) -> dict:
    return {"values": {"method": method}, "seed": seed, "metrics": _metrics(error)}


def test_paired_differences_per_seed_by_hand():
    # reference error 0.5 everywhere: a row with error e has CE = e / 0.5 per corruption, mCE = 200·e
    rows = [_row("none", 0, 0.5), _row("a", 0, 0.25), _row("a", 1, 0.25), _row("b", 0, 0.30), _row("b", 1, 0.35)]
    md, record = severity_tables(rows, _metrics(0.5), 1, ["method=a"])
    mce = {r["row"]: r["mCE"]["mean"] for r in record["rows"]}
    assert mce == pytest.approx({"method=none": 100.0, "method=a": 50.0, "method=b": 65.0})
    assert [d["row"] for d in record["paired"]] == ["method=b"]  # not the reference row, not itself
    (b_minus_a,) = record["paired"]
    assert b_minus_a["mCE"]["per_seed"] == pytest.approx([10.0, 20.0])
    assert b_minus_a["mCE"]["mean"] == pytest.approx(15.0)
    assert b_minus_a["mCE"]["std"] == pytest.approx(50 ** 0.5)  # sample std of (10, 20)
    assert "+15.0 ± 7.1 (+10.0, +20.0)" in md


def test_rows_are_read_from_cell_folders_and_an_incomplete_row_is_left_out(tmp_path):
    for name, error in (("method=a__seed=0", 0.25), ("method=b__k=5__seed=1", 0.3)):
        cells = {k.split(" [")[0]: {"metric": "top1_accuracy", "value": v} for k, v in _metrics(error).items()}
        (tmp_path / name / "eval").mkdir(parents=True)
        (tmp_path / name / "eval" / "results.json").write_text(json.dumps({"cells": cells}))
    rows = read_rows(tmp_path)
    assert [(r["values"], r["seed"]) for r in rows] == [({"method": "a"}, 0), ({"method": "b", "k": "5"}, 1)]
    rows[1]["metrics"].pop(f"{corruption_key('fog', 1)} [top1_accuracy]")
    _, record = severity_tables(rows, _metrics(0.5), 1)
    assert [r["row"] for r in record["rows"]] == ["method=a"]
    with pytest.raises(ValueError, match="not in the table"):
        severity_tables(rows, _metrics(0.5), 1, ["method=c"])


def test_detection_table_per_severity_and_family(tmp_path):
    # mAP = 0.1·severity for noise corruptions, 0.5 otherwise; two seeds identical
    for seed in (0, 1):
        cells = {"clean": {"value": 0.6, "metric": "mAP"}}
        for c in COMMON_CORRUPTIONS:
            for s in (1, 3):
                cells[corruption_key(c, s)] = {"value": 0.1 * s if c in SUBSETS["noise"] else 0.5, "metric": "mAP"}
        folder = tmp_path / f"method=gfn_det__seed={seed}" / "eval"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"cells": cells}))
    md, groups = detection_severity_table(tmp_path)
    (runs,) = groups.values()
    n_noise = len(SUBSETS["noise"])
    assert runs[0]["noise"] == pytest.approx(0.2) and runs[0]["blur"] == pytest.approx(0.5)
    assert runs[0]["sev1"] == pytest.approx((0.1 * n_noise + 0.5 * (15 - n_noise)) / 15)
    assert "| method=gfn_det | 60.0 ± 0.0 | 42.0 ± 0.0 | 46.0 ± 0.0 | 20.0 ± 0.0 | 50.0 ± 0.0 |" in md
    assert md.rstrip().endswith("| 2 |")


def test_digit_share_counts_corruption_induced_mistakes_that_keep_a_digit(tmp_path):
    """digits_pairs: class "ab" = 10·a + b. Six test images, right when clean except the last; of the
    corrupted predictions, 3 are corruption-induced mistakes: one keeps the left digit, one the right,
    one neither (a mistake on an image wrong when clean does not count)."""
    import torch

    from robustune.eval.results import Cell, EvalResults, save_per_sample
    from robustune.report.digit_share import digit_share

    label = torch.tensor([37, 37, 12, 12, 55, 90])
    clean_pred = torch.tensor([37, 37, 12, 12, 55, 91])
    fog_pred = torch.tensor([31, 97, 12, 44, 55, 11])  # 31 keeps "3", 97 keeps "7", 44 keeps none; 90 → 11 not induced
    results = EvalResults(model={}, dataset={}, seed=0, environment={})
    for key, pred in (("clean", clean_pred), ("corruptions/fog/1", fog_pred)):
        results.add(Cell(key, key.split("/")[0], "top1_accuracy", float((pred == label).float().mean()), n=6))
        save_per_sample(tmp_path, key, label=label, pred=pred, correct=(pred == label))
    results.save(tmp_path / "results.json")
    share = digit_share(tmp_path, 1)
    assert share["pooled"] == {"n_mistakes": 3, "share_keeps_a_digit": pytest.approx(2 / 3),
                               "share_keeps_left": pytest.approx(1 / 3), "share_keeps_right": pytest.approx(1 / 3)}
    assert share["uniform_share"] == pytest.approx(18 / 99) and set(share["per_corruption"]) == {"fog"}
