"""Training losses beyond plain cross-entropy (GFN's inter-class distance weighted readings, ...)."""

from robustune.losses.gfn import GFN_LOSSES, gfn_loss, neighbor_weights

__all__ = ["GFN_LOSSES", "gfn_loss", "neighbor_weights"]
