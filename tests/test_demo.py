"""The main job end to end through the CLI, in its quick form (a few epochs, a few cells)."""

import json

from robustune.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    try:
        main(["demo", "--quick", "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    console = capsys.readouterr().out
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
    assert md.index("## Findings") < md.index("## Summary") < md.index("## CLIP")
    assert "ER-APT" in md and "clip_tiny_digits" not in md  # display names, not preset file names
    assert len(html.encode()) < 500_000
    assert (out / "analysis" / "error_ranks.png").exists()
    assert (out / "clip" / "table.md").exists()
    clean_erm = models["erm"]["cells"]["clean"]["value"]
    assert f"{100 * clean_erm:.2f}" in md  # the report shows results.json's number
    # console: the stage counter, one line per evaluated model naming it, then what was made,
    # the headline numbers, stage times and what to open; library notices only in demo.log
    timings = json.loads((out / "timings.json").read_text())
    assert [s["stage"] for s in timings["stages"]][:2] == ["pretrain", "finetune_pgd_at"]
    assert f"[1/{len(timings['stages'])}] pre-training" in console
    for name in ("erm_digits", "pgd_at_digits", "gfn_digits"):
        assert f"    {name}: clean " in console
    last = console.strip().splitlines()
    assert last[-1] == f"open {out / 'report.html'}" and last[-2].startswith("stage times: pretrain")
    assert "headline numbers" in console and "CLIP ER-APT: HM natural" in console
    log = (out / "demo.log").read_text()
    assert "No pretrained weights loaded" in log or "not using" in log
    for notice in ("No pretrained weights loaded", "not using", "starting fresh"):
        assert notice not in console
