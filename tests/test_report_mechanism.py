"""The report's error-rank section (GFN Sec. 3.1 on every compared model) on hand-made outcomes."""

import pytest
import torch

from robustune.eval.results import Cell, EvalResults, save_per_sample
from robustune.gfn.similarity import ClassSimilarity
from robustune.report import write_report
from robustune.report.mechanism import error_rank_section, group_mce, neighbour_corruptions, run_mistakes
from robustune.report.tables import load_runs

C, N = 6, 60
# class similarity: ranks[c, j] = (j - c) mod C, so the nearest class of c is c + 1
RANKS = torch.tensor([[(j - c) % C for j in range(C)] for c in range(C)])


def _eval(folder, name, wrong_by, similarity=False):
    """A model right on every clean image; on corruption c it errs on the first ``n`` images,
    predicting label + ``shift`` (rank = shift) — ``wrong_by[c] = (n, shift)``. Source order reversed."""
    labels = torch.arange(N) % C
    res = EvalResults({"run_name": name}, {"name": "toy", "split": "test", "n_images": N}, 0, {})
    res.cells["clean"] = Cell.from_outcomes("clean", "clean", "top1_accuracy", torch.ones(N, dtype=torch.bool))
    save_per_sample(folder, "clean", correct=torch.ones(N, dtype=torch.bool), pred=labels, label=labels)
    for c, (n, shift) in wrong_by.items():
        source = torch.arange(N).flip(0)
        y = labels[source]
        pred = y.clone()
        pred[:n] = (y[:n] + shift) % C
        key = f"corruptions/{c}/1"
        res.cells[key] = Cell.from_outcomes(key, "corruptions", "top1_accuracy", pred == y, corruption=c, severity=1)
        save_per_sample(folder, key, correct=pred == y, pred=pred, label=y, source=source)
    res.save(folder / "results.json")
    if similarity:
        ClassSimilarity(torch.eye(C), RANKS, [str(i) for i in range(C)]).save(folder.parent)
    return folder


@pytest.fixture()
def runs(tmp_path):
    # the reference errs on neighbours (rank 1) under "noise", anywhere (rank 3) under "fog"
    ref = _eval(tmp_path / "erm" / "eval", "erm", {"noise": (30, 1), "fog": (30, 3)}, similarity=True)
    # the fine-tuned model: fewer mistakes under noise, pushed to rank 2; fog unchanged
    ft = _eval(tmp_path / "gfn" / "eval", "gfn", {"noise": (15, 2), "fog": (30, 3)})
    return load_runs([ref, ft])


def test_histograms_align_each_image_with_its_clean_source(runs):
    m = run_mistakes(runs[0], RANKS)
    assert m.hists[("noise", 1)].counts[:3] == [30, 0, 0] and m.hists[("fog", 1)].counts[:3] == [0, 0, 30]
    assert neighbour_corruptions(m, k=1, factor=2.0) == ["noise"]  # 100 % on rank 1 vs uniform 20 %
    assert neighbour_corruptions(m, k=4, factor=2.0) == []  # ranks 1–4 hold 80 % uniformly: < 2 × 80 %


def test_group_mce_splits_by_corruption():
    ref = {"noise": {1: 0.5}, "fog": {1: 0.5}}
    assert group_mce({"noise": {1: 0.25}, "fog": {1: 0.5}}, ref, ["noise"]) == pytest.approx(50.0)
    assert group_mce({"noise": {1: 0.25}, "fog": {1: 0.5}}, ref, ["fog"]) == pytest.approx(100.0)
    assert group_mce({}, ref, ["noise"]) is None


def test_section_rows_and_report(runs, tmp_path):
    section = error_rank_section(runs, k=1)
    md = section.markdown
    assert "mCE, 1 neighbour corruptions" in md and "noise" in md
    rows = {line.split("|")[1].strip(): [v.strip() for v in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| erm") or line.startswith("| gfn")
            or line.startswith("| uniform")}
    assert rows["uniform"][0] == "20.00"
    assert rows["erm (n = 60)"][:2] == ["50.00", "100.00"]  # rank 1 share; ranks 1–5 (fog: rank 3)
    assert rows["gfn (n = 45)"][0] == "0.00"  # its noise mistakes moved to rank 2
    assert rows["gfn (n = 45)"][-2:] == ["50.00", "100.00"]  # mCE: neighbour corruptions, others
    out = write_report([r.path for r in runs], tmp_path / "r.md")
    assert "Where corruption-induced mistakes land" in out.read_text()


def test_section_needs_a_similarity_and_two_aligned_models(tmp_path):
    a = _eval(tmp_path / "a" / "eval", "a", {"noise": (5, 1)})
    b = _eval(tmp_path / "b" / "eval", "b", {"noise": (5, 1)})
    assert error_rank_section(load_runs([a, b])) is None  # no class similarity saved
    c = _eval(tmp_path / "c" / "eval", "c", {"noise": (5, 1)}, similarity=True)
    assert error_rank_section(load_runs([c])) is None  # one model: nothing to compare
    assert error_rank_section(load_runs([c, a])) is not None
    same = load_runs([c, _eval(tmp_path / "d" / "eval", "c", {"noise": (5, 1)})])
    assert [r.name for r in same] == ["c [c]", "c [d]"]  # a repeated run name: named by its run folder
