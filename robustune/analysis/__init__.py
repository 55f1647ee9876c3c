"""Analyses of trained models and of attack populations (Theorem-1 coverage, ...).

GFN's analyses (paper Sec. 3.1): error-rank histograms of corruption-induced mistakes,
inter-class similarity heatmaps, pixel-intensity histograms. Pure functions + PNG/JSON writers.
"""

from robustune.analysis.coverage import CoverageStats, plot_population_diagnostics, population_coverage  # ER-APT
from robustune.analysis.error_ranks import ErrorRankHistogram, corruption_error_ranks
from robustune.analysis.intensity import IntensityHistogram, intensity_histogram
from robustune.analysis.plots import (
    plot_error_rank_histograms,
    plot_intensity_histograms,
    plot_similarity_heatmaps,
)

__all__ = [
    "CoverageStats", "plot_population_diagnostics", "population_coverage",
    "ErrorRankHistogram", "IntensityHistogram", "corruption_error_ranks", "intensity_histogram",
    "plot_error_rank_histograms", "plot_intensity_histograms", "plot_similarity_heatmaps",
]
