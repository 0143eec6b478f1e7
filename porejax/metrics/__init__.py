"""Microstructure metrics: volume fraction, surface area, TPB, two-point correlation, tortuosity.

Exact definitions: DESIGN.md, "Metrics: exact definitions". Every function takes numpy or JAX arrays of
one volume (D, H, W) or a batch (B, D, H, W); array axes 0, 1, 2 are called x, y, z; lengths in um.
"""

from porejax.metrics.characterise import characterise
from porejax.metrics.correlation import two_point_correlation
from porejax.metrics.morphology import (
    specific_surface_area,
    tpb_edge_count,
    triple_phase_boundary_density,
    volume_fraction,
)
from porejax.metrics.diffusion import TortuosityResult, effective_diffusivity, tortuosity

__all__ = [
    "TortuosityResult",
    "characterise",
    "effective_diffusivity",
    "specific_surface_area",
    "tortuosity",
    "tpb_edge_count",
    "triple_phase_boundary_density",
    "two_point_correlation",
    "volume_fraction",
]
