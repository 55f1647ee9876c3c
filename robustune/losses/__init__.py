"""Training losses beyond plain cross-entropy (GFN's inter-class distance weighted readings, ...)."""

from robustune.losses.gfn import GFN_LOSSES, gfn_loss, neighbor_weights
from robustune.losses.region import reduce_region, region_loss  # ER-APT
from robustune.losses.weighting import LossWeighting, WeightingParams  # ER-APT

__all__ = ["GFN_LOSSES", "LossWeighting", "WeightingParams", "gfn_loss", "neighbor_weights", "reduce_region",
           "region_loss"]
