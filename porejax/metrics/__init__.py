"""Microstructure metrics: volume fraction, surface area, TPB, two-point correlation, tortuosity.

Exact definitions: DESIGN.md, "Metrics: exact definitions". Every function takes numpy or JAX arrays of
one volume (D, H, W) or a batch (B, D, H, W); array axes 0, 1, 2 are x, y, z (porejax.axes); lengths in um.

One result convention: numpy arrays, batch first. A batch (B, D, H, W) gives per-volume arrays (B, ...);
one volume (D, H, W) gives the same arrays without the batch axis (a number where a batch gives (B,)).
Phases are an array axis in the order of `phases` (default: the labels present, sorted: PhaseMap order),
axes an array axis in x, y, z order. Results with several fields are NamedTuples (`TortuosityResult`,
`TwoPointCorrelation`, `Characterisation`, `position.FaceProfile`) whose docstrings give shapes and units;
JSON comes only where results are written (porejax.jsonio). Plain calls on a numpy array, as with TauFactor
or PoreSpy:

    volume_fraction(labels)                       # (P,) array, phases in sorted label order
    tortuosity(labels, axis=0, phase=255).tau     # a number (inf without a spanning path)
    r, s2 = two_point_correlation(labels == 255)  # (L,) lags and (L,) S2
"""

from porejax.metrics.characterise import Characterisation, characterise
from porejax.metrics.correlation import TwoPointCorrelation, two_point_correlation
from porejax.metrics.morphology import (
    specific_surface_area,
    tpb_edge_count,
    triple_phase_boundary_density,
    volume_fraction,
)
from porejax.metrics.diffusion import TortuosityResult, effective_diffusivity, tortuosity

__all__ = [
    "Characterisation",
    "TortuosityResult",
    "TwoPointCorrelation",
    "characterise",
    "effective_diffusivity",
    "specific_surface_area",
    "tortuosity",
    "tpb_edge_count",
    "triple_phase_boundary_density",
    "two_point_correlation",
    "volume_fraction",
]
