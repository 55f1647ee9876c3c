"""The robustness pipeline end to end on digits: corrupt, eval with a reference mCE, analyze, report."""

import json

import pytest


def test_corrupt_eval_analyze_report_pipeline(tmp_path):
    """Two 1-epoch CNN runs on digits, a small digits-C, `eval` (mCE vs run a), `analyze`, `report`."""
    from robustune.cli import main
    from robustune.config import load_config
    from robustune.corruptions import ensure_corrupted_dataset
    from robustune.engine import train

    runs = []
    for name, seed in (("a", 0), ("b", 1)):
        cfg = load_config("configs/erm_digits.yaml", [f"name={name}", "model.name=small_cnn",
                                                      "train.epochs=1", f"train.seed={seed}",
                                                      "train.eval_every=0", "data.train_subset=100",
                                                      "model.kwargs={width: 4}"])
        train(cfg, tmp_path / name)
        runs.append(str(tmp_path / name))
    root = ensure_corrupted_dataset("digits", tmp_path / "digits-c", "contrast,gaussian_noise", "3")

    def cli(*argv):
        with pytest.raises(SystemExit) as exc:
            main([*argv])
        assert exc.value.code in (0, None)

    cli("eval", runs[0], "--suite", "clean,corruptions", "--option", f"corruption_root={root}")
    cli("eval", runs[1], "--suite", "clean,corruptions", "--option", f"corruption_root={root}",
        "--option", f"reference_results={runs[0]}")
    res = json.loads((tmp_path / "b" / "eval" / "results.json").read_text())["cells"]
    assert res["corruptions/mCE"]["details"]["normalizer"] == "reference model: a"
    errors = {c: 1 - res[f"corruptions/{c}/3"]["value"] for c in ("contrast", "gaussian_noise")}
    ref = json.loads((tmp_path / "a" / "eval" / "results.json").read_text())["cells"]
    ref_err = {c: 1 - ref[f"corruptions/{c}/3"]["value"] for c in errors}
    assert res["corruptions/mCE"]["value"] == pytest.approx(50 * sum(errors[c] / ref_err[c] for c in errors))

    an = tmp_path / "a" / "analysis"
    cli("analyze", *runs, "--corruption-root", str(root), "--out", str(an),
        "--corruptions", "contrast,gaussian_noise", "--severity", "3", "--shared-similarity")
    cli("report", *runs, "--out", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 + 3  # severity plot + the 3 analyses (no PGD cells)
    assert "error ranks" in html and "similarity heatmaps" in html and "pixel intensity" in html
    data = json.loads((an / "error_ranks.json").read_text())
    assert {(h["model"], h["corruption"]) for h in data["histograms"]} == {
        (m, c) for m in ("a", "b") for c in ("contrast", "gaussian_noise")}
    for h in data["histograms"]:
        assert h["extra"]["ranked_by_similarity_of"] == "a"  # --shared-similarity
        assert sum(h["counts"]) == h["n_mistakes"] <= h["n_clean_correct"] <= 360
    assert set(json.loads((an / "similarity_heatmaps.json").read_text())["similarity"]) == {"a", "b"}
    assert (an / "pixel_intensity.png").exists()
    summary = json.loads((an / "error_rank_summary.json").read_text())
    assert summary["a"]["n_mistakes"] == sum(h["n_mistakes"] for h in data["histograms"] if h["model"] == "a")
