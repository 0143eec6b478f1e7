"""Per-volume metrics of a set of label volumes (`characterise_set` -> `metrics.Characterisation`) and the
metrics the comparison tables show (`METRICS`, `metric_values`), with their units.

Lengths are micrometres when the voxel size is known, else voxel edges (then SSA is per voxel and TPB
per voxel^2, and the report says so).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from porejax import metrics
from porejax.compare.progress import Progress, eta, say
from porejax.errors import PorejaxError
from porejax.metrics import Characterisation
from porejax.metrics.characterise import concatenate, take_volumes
from porejax.volume import PhaseMap, to_indices

_CHARACTERISE_BATCH = 8
_SUPERSCRIPTS = {1: "⁻¹", 2: "⁻²"}


def metric_values(m: Characterisation, metric: str, phase: int | None) -> np.ndarray:
    """The (B,) per-volume values of a table metric (see METRICS) for phase index `phase` (None for TPB);
    D_rel is the mean over x, y, z."""
    if metric == "tpb_density":
        return m.tpb_density
    if metric == "relative_diffusivity":
        return m.relative_diffusivity[:, phase].mean(axis=1)
    return getattr(m, metric)[:, phase]


def samples_json(m: Characterisation) -> dict:
    """The per-volume values metrics.json lists for a set (arrays; porejax.jsonio writes them)."""
    out = {
        "volume_fraction": m.volume_fraction,
        "specific_surface_area": m.specific_surface_area,
        "relative_diffusivity_xyz": m.relative_diffusivity,
    }
    if m.tpb_density is not None:
        out["tpb_density"] = m.tpb_density
    return out


class Metric(NamedTuple):
    key: str
    title: str
    inverse_length_power: int  # the unit is length^-power (0: dimensionless)
    per_phase: bool


METRICS = (
    Metric("volume_fraction", "volume fraction", 0, True),
    Metric("specific_surface_area", "specific surface area", 1, True),
    Metric("relative_diffusivity", "relative diffusivity D_rel (mean of x, y, z)", 0, True),
    Metric("tpb_density", "TPB density", 2, False),
)


def length_unit(voxel_size: float | None) -> str:
    """The unit of lengths in the comparison: "µm" for a known voxel size, else "voxel"."""
    return "voxel" if voxel_size is None else "µm"


def unit_text(metric: Metric, length: str) -> str:
    """A metric's unit for tables and axis labels, e.g. "µm⁻¹" or "voxel⁻²" ("" when dimensionless)."""
    return f"{length}{_SUPERSCRIPTS[metric.inverse_length_power]}" if metric.inverse_length_power else ""


def characterise_set(
    volumes: np.ndarray, phase_map: PhaseMap, voxel_size: float, progress: Progress = None, what: str = "volumes"
) -> Characterisation:
    """`metrics.characterise` of label volumes (B, S, S, S) with the PhaseMap's labels: per-volume arrays
    (B, P, ...), phases in PhaseMap order.

    Metrics are those of non-periodic volumes for every set (outer faces and wrap-around paths never
    count), so periodic and non-periodic sets compare like for like. Works in batches of 8 volumes (smaller
    sets and the last batch are padded, so every call has one compiled shape) and reports progress.
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.shape[0] < 1:
        raise PorejaxError(f"{what} must be a batch (B, D, H, W) of label volumes, got shape {volumes.shape}")
    to_indices(volumes, phase_map)  # every label must belong to the PhaseMap
    n, batch = volumes.shape[0], _CHARACTERISE_BATCH
    parts = []
    start = time.perf_counter()
    for lo in range(0, n, batch):
        chunk = volumes[lo : lo + batch]
        real_count = len(chunk)
        if real_count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real_count, axis=0)])
        part = metrics.characterise(chunk, voxel_size, phases=phase_map.labels)
        parts.append(take_volumes(part, slice(0, real_count)))
        say(progress, f"characterise {what}: {lo + real_count}/{n} volumes ({eta(lo + real_count, n, start)})")
    return concatenate(parts)
