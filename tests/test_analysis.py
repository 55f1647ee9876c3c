"""GFN Sec. 3.1 analyses: error ranks on hand-made predictions, intensity histograms, plots + JSON, CLI."""

import json

import numpy as np
import pytest
import torch

from robustune.analysis import (
    corruption_error_ranks,
    intensity_histogram,
    plot_error_rank_histograms,
    plot_intensity_histograms,
    plot_similarity_heatmaps,
)
from robustune.gfn.similarity import neighbor_ranks


def similarity_4():
    # class 0's order: 1 (0.9), 2 (0.5), 3 (0.1); class 1's: 0, 3, 2; ...
    return torch.tensor([[1.0, 0.9, 0.5, 0.1],
                         [0.9, 1.0, 0.2, 0.3],
                         [0.5, 0.2, 1.0, 0.8],
                         [0.1, 0.3, 0.8, 1.0]])


def test_error_ranks_count_only_corruption_induced_mistakes():
    ranks = neighbor_ranks(similarity_4())
    assert ranks[0].tolist() == [0, 1, 2, 3] and ranks[1].tolist() == [1, 0, 3, 2]
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    clean = torch.tensor([0, 0, 0, 1, 0, 2, 3])  # image 4 is wrong already when clean
    corrupt = torch.tensor([1, 3, 0, 2, 2, 3, 2])
    h = corruption_error_ranks(clean, corrupt, labels, ranks, "fog", 3, "m")
    # induced: img0 0->1 (rank 1), img1 0->3 (rank 3), img3 1->2 (rank 3), img5 2->3 (rank 1), img6 3->2 (rank 1)
    assert h.counts == [3, 0, 2]
    assert h.n_mistakes == 5 and h.n_clean_correct == 6
    assert h.fractions == pytest.approx([0.6, 0.0, 0.4])
    assert h.mean_rank == pytest.approx((3 * 1 + 2 * 3) / 5)
    assert h.top_k_fraction(1) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="aligned"):
        corruption_error_ranks(clean[:3], corrupt, labels, ranks)


def test_error_rank_summary_pools_corruptions_against_the_uniform_share():
    from robustune.analysis.error_ranks import summarize_error_ranks

    ranks = neighbor_ranks(similarity_4())
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3])
    h1 = corruption_error_ranks(labels, torch.tensor([1, 3, 0, 2, 2, 3, 2]), labels, ranks, "fog", 3, "m")
    h2 = corruption_error_ranks(labels, torch.tensor([2, 0, 0, 1, 1, 2, 3]), labels, ranks, "snow", 3, "m")
    s = summarize_error_ranks([h1, h2], ks=(1, 2))["m"]  # snow: one mistake, at rank 2
    assert s["n_mistakes"] == h1.n_mistakes + 1 == sum(h1.counts) + 1
    assert s["top_k"]["1"] == pytest.approx(h1.counts[0] / s["n_mistakes"])
    assert s["top_k"]["2"] == pytest.approx((h1.counts[0] + h1.counts[1] + 1) / s["n_mistakes"])
    assert s["uniform_top_k"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(2 / 3)}
    assert s["uniform_mean_rank"] == 2 and s["per_corruption"]["snow"]["n_mistakes"] == 1


def test_intensity_histogram_uint8_equals_float_and_is_a_density():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    a = intensity_histogram(u8, "u8", bins=16)
    b = intensity_histogram(torch.from_numpy(u8).float() / 255, "f", bins=16)
    assert a.density == pytest.approx(b.density) and a.mean == pytest.approx(b.mean)
    width = np.diff(a.edges)
    assert float((np.array(a.density) * width).sum()) == pytest.approx(1.0)
    dark = intensity_histogram(torch.zeros(2, 3, 4, 4), bins=4)
    assert dark.density[0] > 0 and dark.density[-1] == 0 and dark.mean == 0


def test_plots_write_png_and_the_data_as_json(tmp_path):
    ranks = neighbor_ranks(similarity_4())
    labels = torch.tensor([0, 1, 2, 3])
    hists = [corruption_error_ranks(labels, torch.tensor([1, 0, 3, 2]), labels, ranks, c, 3, m)
             for c in ("fog", "snow") for m in ("erm", "gfn")]
    p = plot_error_rank_histograms(hists, tmp_path / "ranks.png")
    assert p.read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "ranks.json").read_text())
    assert data["histograms"][0]["counts"] == hists[0].counts and len(data["histograms"]) == 4
    sims = {"erm": similarity_4(), "gfn": similarity_4().pow(2)}
    plot_similarity_heatmaps(sims, ["a", "b", "c", "d"], tmp_path / "sim.png")
    sim_json = json.loads((tmp_path / "sim.json").read_text())
    assert sim_json["similarity"]["gfn"][0][1] == pytest.approx(0.81)
    clean = intensity_histogram(torch.rand(2, 3, 8, 8), "clean")
    plot_intensity_histograms(clean, [intensity_histogram(torch.rand(2, 3, 8, 8) * 0.5, "contrast")],
                              tmp_path / "int.png")
    assert (tmp_path / "int.png").stat().st_size > 1000
    assert json.loads((tmp_path / "int.json").read_text())["clean"]["density"] == pytest.approx(clean.density)
