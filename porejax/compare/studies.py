"""Studies of the generator for the report's figures: a periodic volume's diffusion with mirror vs periodic
side boundaries (paper Fig. 8) and generation time against size (paper S7)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from porejax import figures, metrics
from porejax.axes import AXES
from porejax.compare.progress import Progress, say
from porejax.generate import FrozenGenerator
from porejax.volume import PhaseMap


def periodic_flux_study(generator: FrozenGenerator, size: int, seed: int) -> dict:
    """Fig. 8: a periodic volume (side: `size` rounded down to the period unit), its most abundant phase's
    diffusion along x with mirror vs periodic side boundaries: D_rel of both and the flux fields."""
    unit = generator.config.period_unit
    side = max(unit, size // unit * unit)
    volume, _ = generator.generate(generator.latent(seed, generator.latent_size_for(side, AXES)), AXES)
    counts = [np.count_nonzero(volume == lab) for lab in generator.phase_map.labels]
    phase = int(np.argmax(counts))
    mask = volume == generator.phase_map.labels[phase]
    solves = {
        side_bc: metrics.tortuosity(mask, axis=0, side_boundary=side_bc, return_field=True)
        for side_bc in ("mirror", "periodic")
    }
    return {
        "volume": volume,
        "phase": phase,
        "side": side,
        "seed": seed,
        "relative_diffusivity": {k: float(r.relative_diffusivity) for k, r in solves.items()},
        "flux": {k: np.asarray(r.flux) for k, r in solves.items()},
    }


def periodic_flux_figure(study: dict, phase_map: PhaseMap, voxel_size: float, length: str = "µm"):
    """Fig. 8 of a `periodic_flux_study` result (the report's and the periodic-boundary experiment's)."""
    mirror, periodic = study["flux"]["mirror"], study["flux"]["periodic"]
    return figures.periodic_tiling_and_flux(
        study["volume"], mirror, periodic, phase_map, voxel_size, study["phase"], study["relative_diffusivity"], length
    )


def time_generation(
    generator: FrozenGenerator,
    latent_sides: Sequence[int] = (1, 2, 3, 4, 5),
    repeats: int = 2,
    progress: Progress = None,
) -> dict:
    """Seconds to generate a non-periodic volume as `porejax generate --size` does, of the side the paper's
    zero-padded latent of each side gives (u (a + 3)), best of `repeats` after a compiling warm-up, and the
    least-squares line seconds = intercept + slope * Mvoxels (paper S7)."""
    voxels, seconds = [], []
    for a in latent_sides:
        side = generator.config.output_side(a, False)
        z = generator.latent(0, generator.latent_size_for(side))
        generator.generate(z, size=side)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            generator.generate(z, size=side)
            best = min(best, time.perf_counter() - start)
        voxels.append(side**3)
        seconds.append(best)
        say(progress, f"generation time: {side}^3 in {best:.3f} s")
    x, y = np.asarray(voxels) / 1e6, np.asarray(seconds)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1 - np.sum(residual**2) / total) if total > 0 else 1.0
    return {
        "voxels": voxels,
        "seconds": seconds,
        "slope_s_per_mvoxel": float(slope),
        "intercept_s": float(intercept),
        "r2": r2,
    }
