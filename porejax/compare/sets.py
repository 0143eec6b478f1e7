"""Per-volume metrics of a set of label volumes (`characterise_set` -> `SetMetrics`) and the metrics the
comparison tables show (`METRICS`), with their units.

Lengths are micrometres when the voxel size is known, else voxel edges (then SSA is per voxel and TPB
per voxel^2, and the report says so).
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import numpy as np

from porejax import metrics
from porejax.axes import AXES
from porejax.compare.progress import Progress, eta, say
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap, to_indices

_CHARACTERISE_BATCH = 8
_SUPERSCRIPTS = {1: "⁻¹", 2: "⁻²"}


@dataclasses.dataclass(frozen=True)
class SetMetrics:
    """Per-volume metrics of a set of B label volumes with P phases (PhaseMap order).

    volume_fraction (B, P); specific_surface_area (B, P) per unit length; relative_diffusivity (B, P, 3)
    along x, y, z (mirror side boundaries; 0 without a spanning path); tpb_density (B,) per unit length
    squared, or None when P != 3; s2 (B, P, 3, L): S2 along x, y, z at lags 0..L-1 voxels (s2[..., 0] = volume
    fraction).
    """

    volume_fraction: np.ndarray
    specific_surface_area: np.ndarray
    relative_diffusivity: np.ndarray
    tpb_density: np.ndarray | None
    s2: np.ndarray

    @property
    def size(self) -> int:
        return self.volume_fraction.shape[0]

    def values(self, metric: str, phase: int | None) -> np.ndarray:
        """The (B,) per-volume values of a table metric (see METRICS); D_rel is the mean of x, y, z."""
        if metric == "tpb_density":
            return self.tpb_density
        if metric == "relative_diffusivity":
            return self.relative_diffusivity[:, phase].mean(axis=1)
        return getattr(self, metric)[:, phase]

    def to_json(self) -> dict:
        out = {
            "volume_fraction": self.volume_fraction,
            "specific_surface_area": self.specific_surface_area,
            "relative_diffusivity_xyz": self.relative_diffusivity,
        }
        if self.tpb_density is not None:
            out["tpb_density"] = self.tpb_density
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
) -> SetMetrics:
    """Characterise label volumes (B, S, S, S) with the PhaseMap's labels by `metrics.characterise`.

    Metrics are those of non-periodic volumes for every set (outer faces and wrap-around paths never
    count), so periodic and non-periodic sets compare like for like. Works in batches of 8 volumes (smaller
    sets and the last batch are padded, so every call has one compiled shape) and reports progress.
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.shape[0] < 1:
        raise PorejaxError(f"{what} must be a batch (B, D, H, W) of label volumes, got shape {volumes.shape}")
    to_indices(volumes, phase_map)  # every label must belong to the PhaseMap
    labels = phase_map.labels
    n, batch = volumes.shape[0], _CHARACTERISE_BATCH
    parts: list[dict[str, np.ndarray]] = []
    start = time.perf_counter()
    for lo in range(0, n, batch):
        chunk = volumes[lo : lo + batch]
        real_count = len(chunk)
        if real_count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real_count, axis=0)])
        part = _characterise_batch(chunk, labels, voxel_size)
        parts.append({k: v[:real_count] for k, v in part.items()})
        say(progress, f"characterise {what}: {lo + real_count}/{n} volumes ({eta(lo + real_count, n, start)})")
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return SetMetrics(merged["vf"], merged["ssa"], merged["drel"], merged.get("tpb"), merged["s2"])


def _characterise_batch(batch: np.ndarray, labels: tuple[int, ...], voxel_size: float) -> dict[str, np.ndarray]:
    """`metrics.characterise` of a batch -> arrays: vf, ssa (B, P), drel (B, P, 3), s2 (B, P, 3, L), tpb (B,)."""
    records = metrics.characterise(batch, voxel_size, phases=labels)
    phases = [[r["phases"][str(lab)] for lab in labels] for r in records]
    out = {
        "vf": np.array([[p["volume_fraction"] for p in row] for row in phases]),
        "ssa": np.array([[p["specific_surface_area"] for p in row] for row in phases]),
        "drel": np.array([[[p["relative_diffusivity"][a] for a in AXES] for p in row] for row in phases]),
        "s2": np.array([[[p["tpcf"][a] for a in AXES] for p in row] for row in phases]),
    }
    if len(labels) == 3:
        out["tpb"] = np.array([r["tpb_density"] for r in records], np.float64)
    return out
