"""The ``adversarial`` evaluation suite: attack names, cells, per-point files, checks, CLI."""

import json

import pytest

from robustune.config import EvalConfig
from robustune.data import create_dataset
from robustune.data.digits import TensorImageDataset
from robustune.eval import evaluate
from robustune.eval.adversarial import parse_attack
from robustune.eval.adversarial_checks import (
    eps0_is_clean,
    gradient_masking,
    noise_margin,
    pgd_steps_monotone,
)
from robustune.eval.results import Cell, EvalResults, load_per_sample
from robustune.registry import UnknownNameError

FAST_AA = {"apgd-ce": {"steps": 5}, "apgd-t": {"steps": 5, "n_target_classes": 2},
           "fab-t": {"steps": 5, "n_target_classes": 2}, "square": {"n_queries": 30}}


def test_parse_attack_names():
    assert parse_attack("pgd100").steps == 100 and parse_attack("pgd100").loss == "ce"
    cw = parse_attack("cw", default_steps=7)
    assert (cw.family, cw.steps, cw.loss) == ("pgd", 7, "cw")
    assert parse_attack("pgd20-dlr").loss == "dlr"
    assert parse_attack("autoattack").is_autoattack and parse_attack("autoattack-rand").is_autoattack
    with pytest.raises(UnknownNameError, match="apgd-t"):
        parse_attack("apgdt")
    with pytest.raises(UnknownNameError, match="ce, cw, dlr, kl"):
        parse_attack("pgd10-xent")


def _cell(key, value, n=100, **threat):
    return Cell(key=key, suite="adversarial", metric="robust_accuracy", value=value, n=n,
                details={"threat_model": threat, "clean_accuracy": 0.9})


def _results(*cells):
    return EvalResults(model={}, dataset={}, seed=0, environment={}, cells={c.key: c for c in cells})


def test_checks_flag_what_they_should():
    # eps = 0 must equal clean accuracy.
    ok = _cell("a/eps=0", 0.9, eps=0.0, attack="pgd10")
    bad = _cell("b/eps=0", 0.85, eps=0.0, attack="pgd10")
    assert [r["passed"] for r in eps0_is_clean(_results(ok, bad))] == [True, False]
    # PGD-k: a rise within noise passes, a large rise fails.
    pgd = dict(family="pgd", loss="ce", norm="Linf", eps=8 / 255, restarts=1)
    k10 = _cell("pgd10", 0.40, steps=10, **pgd)
    within = _cell("pgd20", 0.40 + noise_margin(0.40, 100) / 2, steps=20, **pgd)
    above = _cell("pgd100", 0.40 + 1.5 * noise_margin(0.40, 100), steps=100, **pgd)
    rows = pgd_steps_monotone(_results(k10, within, above))
    assert [r["passed"] for r in rows] == [True, False]
    # Square far below white-box APGD: gradient masking warning.
    apgd = _cell("apgd", 0.50, attack="apgd-ce", norm="Linf", eps=8 / 255)
    square = _cell("square", 0.20, attack="square", norm="Linf", eps=8 / 255)
    rows = gradient_masking(_results(apgd, square))
    assert len(rows) == 1 and not rows[0]["passed"] and rows[0]["kind"] == "warning"
    square.value = 0.49
    assert gradient_masking(_results(apgd, square))[0]["passed"]
    # Inside AutoAttack: Square breaking many points after the white-box components.
    aa = _cell("aa", 0.30, attack="autoattack", norm="Linf", eps=8 / 255)
    aa.details["components"] = [{"name": n, "robust_accuracy": a} for n, a in
                                [("apgd-ce", 0.5), ("apgd-t", 0.45), ("fab-t", 0.45), ("square", 0.30)]]
    assert not gradient_masking(_results(aa))[0]["passed"]


@pytest.fixture(scope="module")
def small_set():
    ds = create_dataset("digits", "test")
    return TensorImageDataset(ds.images[:24], ds.targets[:24], ds.classes)


def test_suite_cells_per_sample_and_checks(trained_tiny_model, small_set, tmp_path):
    cfg = EvalConfig(suites=["clean", "adversarial"], eps=[2 / 255, 8 / 255])
    options = {"attacks": ["pgd3", "pgd12", "cw5", "fgsm", "autoattack"], "attack_overrides": FAST_AA}
    res = evaluate(trained_tiny_model, small_set, cfg, tmp_path, batch_size=12, options=options)
    clean = res.cells["clean"].value
    key = "adversarial/pgd12/Linf/eps=2/255"
    cell = res.cells[key]
    lo, hi = cell.ci95
    assert lo <= cell.value <= hi and cell.n == 24
    assert cell.details["threat_model"]["steps"] == 12 and cell.details["clean_accuracy"] == clean
    assert res.cells["adversarial/pgd3/Linf/eps=0"].value == clean  # the added ε = 0 cell
    for eps in ("2/255", "8/255"):
        assert res.cells[f"adversarial/pgd12/Linf/eps={eps}"].value <= clean
        aa = res.cells[f"adversarial/autoattack/Linf/eps={eps}"]
        assert aa.details["threat_model"]["standard"] is False  # overrides are recorded
        assert [c["name"] for c in aa.details["components"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    # Larger ε never helps the model (same attack).
    assert res.cells["adversarial/pgd12/Linf/eps=8/255"].value <= cell.value
    per = load_per_sample(tmp_path, key)
    assert per["correct"].shape == (24,) and per["correct"].sum().item() == round(cell.value * 24)
    assert not (per["correct"].bool() & ~per["clean"].bool()).any()
    aa_points = load_per_sample(tmp_path, "adversarial/autoattack/Linf/eps=8/255")
    assert ((aa_points["fooled_by"] >= 0) == (aa_points["clean"].bool() & ~aa_points["correct"].bool())).all()
    names = {c["check"] for c in res.checks}
    assert {"eps=0 reproduces clean accuracy", "robust <= clean (same points)",
            "PGD-k accuracy does not rise with k"} <= names
    assert all(c["passed"] for c in res.checks if c["check"] != "gradient masking (Square after white-box AutoAttack)")
    # Resumable per cell: a second call computes nothing new.
    again = evaluate(trained_tiny_model, small_set, cfg, tmp_path, batch_size=12, options=options)
    assert {k: c.value for k, c in again.cells.items()} == {k: c.value for k, c in res.cells.items()}


def test_cli_eval_adversarial_end_to_end(trained_tiny_run, tmp_path, capsys):
    from robustune.cli import main

    out = tmp_path / "eval"
    overrides = json.dumps(FAST_AA)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(trained_tiny_run), "--suite", "adversarial", "--attacks", "pgd100,cw,autoattack",
              "--eps", "1/255,4/255", "--n-examples", "10", "--steps", "5", "--out", str(out),
              "--option", f"attack_overrides={overrides}", "--option", "pgd_alpha=1/255"])
    assert exc.value.code in (0, None)
    text = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for attack in ("pgd100", "cw", "autoattack"):
        for eps in ("1/255", "4/255"):
            key = f"adversarial/{attack}/Linf/eps={eps}"
            assert key in results["cells"] and key in text
            assert load_per_sample(out, key)["correct"].shape == (10,)
    assert results["dataset"]["n_images"] == 10
    assert results["cells"]["adversarial/cw/Linf/eps=1/255"]["details"]["threat_model"]["steps"] == 5
    assert results["cells"]["adversarial/pgd100/Linf/eps=4/255"]["details"]["threat_model"]["step_size"] == 1 / 255
    assert any(c["check"] == "eps=0 reproduces clean accuracy" and c["passed"] for c in results["checks"])
    assert "sanity checks:" in text


def test_cli_rejects_unknown_attack(trained_tiny_run, tmp_path, capsys):
    from robustune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", str(trained_tiny_run), "--suite", "adversarial", "--attacks", "pgd10,autoatack",
              "--n-examples", "4", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "autoattack" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_standard_autoattack(trained_tiny_run, tmp_path):
    """The exact command of the issue with the standard settings (no overrides)."""
    from robustune.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", str(trained_tiny_run), "--suite", "adversarial", "--attacks", "pgd100,cw,autoattack",
              "--eps", "1/255,4/255", "--n-examples", "16", "--out", str(tmp_path)])
    assert exc.value.code in (0, None)
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    for eps in ("1/255", "4/255"):
        aa, pgd = cells[f"adversarial/autoattack/Linf/eps={eps}"], cells[f"adversarial/pgd100/Linf/eps={eps}"]
        assert aa["details"]["threat_model"]["standard"] is True
        assert aa["value"] <= pgd["value"] + 2 / 16
