"""The robustness report: numbers from results.json shown unchanged, best per column, self-contained."""

import base64
import re
from html.parser import HTMLParser

import pytest

from robustune.eval.results import Cell, EvalResults
from robustune.report import write_report
from robustune.report.tables import format_value, load_runs, parse_eps, summary_table


def make_results(path, name, clean, robust, mce, corr):
    r = EvalResults(model={"run_name": name}, dataset={"name": "digits", "split": "test", "n_images": 360},
                    seed=0, environment={})
    r.cells["clean"] = Cell("clean", "clean", "top1_accuracy", clean, 360)
    for eps, acc in robust.items():
        key = f"pgd/Linf/eps={eps}/255/steps=10"
        r.cells[key] = Cell(key, "pgd", "robust_accuracy", acc, 360, details={"threat_model": {"eps": eps / 255}})
    r.cells["adversarial/apgd-ce/eps=8/255"] = Cell("adversarial/apgd-ce/eps=8/255", "adversarial",
                                                   "robust_accuracy", robust[8] - 0.01, 360)
    for s, acc in enumerate(corr, 1):
        key = f"corruptions/fog/{s}"
        r.cells[key] = Cell(key, "corruptions", "top1_accuracy", acc, 360,
                            details={"corruption": "fog", "severity": s})
    r.cells["corruptions/mCE"] = Cell("corruptions/mCE", "corruptions", "mCE", mce,
                                      details={"normalizer": "reference model: erm"})
    r.cells["corruptions/mean_corruption_accuracy"] = Cell(
        "corruptions/mean_corruption_accuracy", "corruptions", "mean_corruption_accuracy", sum(corr) / len(corr))
    path.mkdir(parents=True)
    r.save(path / "results.json")
    return r


@pytest.fixture
def two_runs(tmp_path):
    a = make_results(tmp_path / "erm" / "eval", "erm", 0.9583333333333334, {2: 0.7, 8: 0.21388888888888888},
                     100.0, [0.8, 0.6])
    b = make_results(tmp_path / "gfn" / "eval", "gfn", 0.9444444444444444, {2: 0.75, 8: 0.3}, 87.65432,
                     [0.85, 0.7])
    return tmp_path, a, b


class Cells(HTMLParser):
    """Collects (data-key, data-value, shown text, is-best) of every table cell."""

    def __init__(self):
        super().__init__()
        self.cells, self._cur, self.images = [], None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "data-value" in attrs:
            self._cur = [attrs.get("data-key"), attrs["data-value"], "", "best" in (attrs.get("class") or "")]
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._cur is not None:
            self._cur[2] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cur is not None:
            self.cells.append(tuple(self._cur))
            self._cur = None


def test_html_shows_every_number_unchanged(two_runs):
    root, a, b = two_runs
    out = write_report([root / "erm", root / "gfn" / "eval" / "results.json"], root / "report.html", title="T")
    text = out.read_text()
    parser = Cells()
    parser.feed(text)
    for res in (a, b):
        for key, cell in res.cells.items():
            shown = [c for c in parser.cells if c[0] == key and float(c[1]) == cell.value]
            assert shown, f"{key} = {cell.value!r} missing from the report"
            # the stored value, exactly (repr round-trips) and its 2-decimal display
            assert repr(cell.value) in [c[1] for c in shown]
            assert any(format_value(cell) in c[2] or repr(cell.value) in c[2] for c in shown)
    assert "95.83" in text and "21.39" in text and "87.65" in text  # % of 0.958333…, 0.213888…; mCE as stored
    # best per column: higher accuracy, lower mCE
    best = {(k, v) for k, v, _, is_best in parser.cells if is_best}
    assert ("clean", repr(0.9583333333333334)) in best
    assert ("corruptions/mCE", repr(87.65432)) in best
    assert ("pgd/Linf/eps=8/255/steps=10", repr(0.3)) in best
    # self-contained: images are inline data, nothing fetched from a network or a server
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert base64.b64decode(parser.images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", text)
    assert "reference model: erm" in text


def test_markdown_report_and_best_marking(two_runs):
    root, _, _ = two_runs
    out = write_report([root / "erm", root / "gfn"], root / "r.md")
    text = out.read_text()
    assert "| erm | **95.83** (n = 360) |" in text
    assert "**87.65**" in text and "| 100.00 |" in text
    pngs = list((root / "r_files").glob("*.png"))
    assert pngs and all(f"r_files/{p.name}" in text for p in pngs)


def test_eps_parsing_and_table_columns(two_runs):
    root, _, _ = two_runs
    runs = load_runs([root / "erm", root / "gfn"])
    t = summary_table(runs)
    keys = [c.key for c in t.columns]
    assert keys[:3] == ["clean", "corruptions/mean_corruption_accuracy", "corruptions/mCE"]
    assert "adversarial/apgd-ce/eps=8/255" in keys
    assert parse_eps("adversarial/apgd-ce/eps=8/255", Cell("k", "a", "robust_accuracy", 0.1)) == pytest.approx(8 / 255)
    assert parse_eps("pgd/Linf/eps=0.5/steps=3", Cell("k", "a", "robust_accuracy", 0.1)) == 0.5
    with pytest.raises(FileNotFoundError, match="robustune eval"):
        load_runs([root / "nothing"])


def test_report_cli(two_runs, capsys):
    from robustune.cli import main

    root, _, _ = two_runs
    with pytest.raises(SystemExit) as exc:
        main(["report", str(root / "erm"), str(root / "gfn"), "--out", str(root / "cli.html")])
    assert exc.value.code in (0, None)
    assert (root / "cli.html").read_text().startswith("<!doctype html>")


@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(two_runs):
    """scripts/screenshot_report.sh renders the file offline; the screenshot is not blank."""
    import subprocess

    import numpy as np
    from PIL import Image

    root, _, _ = two_runs
    html_path = write_report([root / "erm", root / "gfn"], root / "report.html")
    shot = root / "shot.png"
    subprocess.run(["bash", "scripts/screenshot_report.sh", str(html_path), str(shot), "1000x900"],
                   check=True, timeout=120, capture_output=True)
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (900, 1000)
    dark = (img < 128).mean()
    assert 0.005 < dark < 0.5  # text, tables and the plot are drawn on a white page


def _cell(key, suite, metric, k, n=360, **details):
    from robustune.eval.stats import wilson_interval

    return Cell(key, suite, metric, k / n, n, wilson_interval(k, n), details=details)


def make_model(path, name, clean_k, pgd_k, corr_k, mce, rel_mce):
    """Cells as the evaluator writes them: counts out of 360, Wilson intervals, threat models."""
    r = EvalResults(model={"run_name": name}, dataset={"name": "digits", "split": "test", "n_images": 360},
                    seed=0, environment={})
    r.cells["clean"] = _cell("clean", "clean", "top1_accuracy", clean_k)
    for eps, k in pgd_k.items():
        key = f"pgd/Linf/eps={eps}/255/steps=10"
        threat = {"norm": "Linf", "eps": eps / 255, "eps_label": f"{eps}/255", "steps": 10,
                  "step_size": 2.5 * eps / 255 / 10, "restarts": 1, "random_start": True, "loss": "ce"}
        r.cells[key] = _cell(key, "pgd", "robust_accuracy", k, threat_model=threat)
    for (corruption, severity), k in corr_k.items():
        key = f"corruptions/{corruption}/{severity}"
        r.cells[key] = _cell(key, "corruptions", "top1_accuracy", k, corruption=corruption, severity=severity)
    norm = {"normalizer": "reference model: erm", "unit": "percent"}
    r.cells["corruptions/mCE"] = Cell("corruptions/mCE", "corruptions", "mCE", mce, details=norm)
    r.cells["corruptions/relative_mCE"] = Cell("corruptions/relative_mCE", "corruptions", "relative_mCE",
                                               rel_mce, details=norm)
    path.mkdir(parents=True)
    r.save(path / "results.json")
    return r


CORRUPTIONS = ["gaussian_noise", "shot_noise", "defocus_blur", "fog", "contrast"]


@pytest.fixture
def three_models(tmp_path):
    def corr(base):
        return {(c, s): max(0, base - 40 * s - 7 * i) for i, c in enumerate(CORRUPTIONS) for s in (1, 3, 5)}

    make_model(tmp_path / "erm", "erm", 345, {2: 60, 8: 0}, corr(330), 100.0, 100.0)
    make_model(tmp_path / "gfn", "gfn", 343, {2: 75, 8: 0}, corr(335), 95.0, 97.0)
    # lost clean accuracy badly (95.8 → 51.1 %): its relative mCE is the lowest but must not be starred
    make_model(tmp_path / "pgd_at", "pgd_at", 184, {2: 150, 8: 0}, corr(180), 130.0, 40.0)
    return tmp_path


def test_report_findings_threat_models_intervals_and_caveats(three_models):
    root = three_models
    paths = [root / "erm", root / "gfn", root / "pgd_at", root / "missing"]
    text = write_report(paths, root / "r.md", skip_unreadable=True).read_text()
    findings = text[text.index("## Findings"):text.index("## Summary")]
    # every headline number carries its 95 % interval; every adversarial column its threat model
    assert "| erm | **95.83** (93.2–97.5) |" in text
    assert "- **PGD-10 ε=2/255 (%)**: L∞, ε = 2/255, 10 steps, step size 0.5/255, 1 restart, random start, " \
           "ce loss, n = 360 images" in text
    # relative mCE: pgd_at (40.0) is lowest but marked †, gfn (97.00) is starred
    assert "| pgd_at |" in text and "40.00†" in text and "**97.00**" in text and "**40.00**" not in text
    assert "pgd_at lost 44.7 points of clean accuracy" in findings and "not starred" in findings
    # a tie of every model (0 % at 8/255) stars none and is said so
    assert "**0.00**" not in text and "**PGD-10 ε=8/255**: all 3 models are equal" in findings
    # best clean: erm, with gfn next and the intervals overlapping (not resolved at this n)
    assert "**clean top-1**: best **erm** at 95.83 % (95 % CI 93.2–97.5); next gfn" in findings
    assert "not resolved at this n" in findings
    assert "Skipped (not in the tables): `" + str(root / "missing") in findings


def test_corruption_grid_and_family_curves(three_models):
    root = three_models
    html = write_report([root / "erm", root / "gfn", root / "pgd_at"], root / "r.html").read_text()
    md = write_report([root / "erm", root / "gfn", root / "pgd_at"], root / "r.md").read_text()
    # one grid per model: corruptions as rows, severities as columns (not one 15-column row)
    grid = md[md.index("### erm"):md.index("### gfn")]
    assert "| corruption | s1 | s3 | s5 |" in grid
    assert all(f"| {c} |" in grid for c in CORRUPTIONS)
    widest = max(line.count("|") - 1 for line in md.splitlines() if line.startswith("|"))
    assert widest <= 9  # the summary (model + 8 columns) is the widest table
    # the severity figure has a panel per family beside the mean (checked on the image width)
    from PIL import Image
    import io

    parser = Cells()
    parser.feed(html)
    sizes = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).size for s in parser.images]
    assert any(w > 3 * h for w, h in sizes)  # 1 × 4 panels: mean, noise, blur, weather/digital
    assert len(html.encode()) < 500_000


def test_clip_section_names_no_single_seed_spread_and_position(three_models):
    from robustune.fewshot.table import write_tables
    from robustune.report.clip import clip_section

    root = three_models

    def record(method, base, new, rob):
        ev = lambda acc, r: {"natural": acc, "pgd": {"1/255": r}, "robust": {}, "n": 100}  # noqa: E731
        return {"setting": "base2new", "dataset": "digits", "shots": 16, "method": method, "seed": 1,
                "evals": {"base": ev(base, rob), "new": ev(new, rob / 2)},
                "eval": {"pgd_steps": 5, "pgd_alpha": None}}

    write_tables([record("zeroshot", 0.5, 0.5, 0.1), record("fap", 0.9, 0.4, 0.6),
                  record("clip_tiny_digits_erapt_noevo", 0.8, 0.45, 0.5)], root / "clip")
    names = {"zeroshot": "zero-shot CLIP", "fap": "FAP", "clip_tiny_digits_erapt_noevo": "ER-APT w/o evolution"}
    section = clip_section(root / "clip" / "table.json", "CLIP base-to-new", names)
    html = write_report([root / "erm", root / "gfn"], root / "r.html", sections=[section]).read_text()
    rows = [line for line in section.markdown.splitlines() if line.startswith("|")]
    assert not any("±" in r for r in rows) and "| FAP | 1 | **90.0** |" in section.markdown
    assert "ER-APT w/o evolution" in html and "clip_tiny_digits" not in section.html
    assert "harmonic mean" in section.markdown and "PGD-5" in section.markdown
    assert html.index("CLIP base-to-new") < html.index("Appendix: every stored cell")
    assert html.index("Findings") < html.index("<h2>Summary")
    assert any("CLIP HM natural" in f and "FAP" in f for f in section.findings)
