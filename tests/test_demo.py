"""The main job end to end through the CLI, in its quick form (a few epochs, a few cells)."""

import json

from robustune.cli import main


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    try:
        main(["demo", "--quick", "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    report = json.loads((out / "report.json").read_text())
    models = report["models"]
    assert {"erm", "pgd_at", "adv_untargeted", "nbr", "gfn"} <= set(models)
    for res in models.values():
        cells = res["cells"]
        assert "clean" in cells and any(k.startswith("pgd/") for k in cells)
        assert any(c["metric"] == "mCE" for c in cells.values())
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "mCE" in md and "<table" in html and "CLIP: tiny CLIP" in html
    assert (out / "analysis" / "error_ranks.png").exists()
    assert (out / "clip" / "table.md").exists()
    clean_erm = models["erm"]["cells"]["clean"]["value"]
    assert f"{100 * clean_erm:.2f}" in md  # the report shows results.json's number
