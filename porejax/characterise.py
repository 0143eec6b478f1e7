"""`porejax characterise`: the metrics of label-volume files as JSON records and a terminal table.

One record per file (the JSON contract that other tools read):

    {"path", "shape": [D, H, W], "voxel_size_um": float or null,
     "units": {"specific_surface_area": "um^-1", "tpb_density": "um^-2"}  (or "voxel^-1" / "voxel^-2"),
     "volume_fraction": {L: v}, "specific_surface_area": {L: v}, "tpb_density": v or null,
     "tortuosity": {L: {"x", "y", "z"}}, "relative_diffusivity": {L: {"x", "y", "z"}}}

L is the original label value as a string; x, y, z are array axes 0, 1, 2. Without a known voxel size
the lengths are voxel edges (SSA per voxel, TPB per voxel^2) and `units` says so. TPB is null unless the
volume holds exactly three phases. A phase with no spanning path along an axis has tortuosity inf
(written as JSON `Infinity` by porejax.jsonio) and relative diffusivity 0. The metrics themselves live
in porejax.metrics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from porejax import metrics
from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.volume import read_volume, read_voxel_size

METRICS = ("volume_fraction", "specific_surface_area", "tpb_density", "tortuosity")
_ALIASES = {"relative_diffusivity": "tortuosity"}  # both come from the same diffusion solves


def parse_metrics(names: Sequence[str] | None) -> tuple[str, ...]:
    """Metric names (comma-separated items allowed; None: all) -> the selected names in METRICS order."""
    if not names:
        return METRICS
    chosen = {_ALIASES.get(n.strip(), n.strip()) for item in names for n in item.split(",") if n.strip()}
    unknown = sorted(chosen - set(METRICS))
    if unknown or not chosen:
        raise PorejaxError(
            f"unknown metric(s) {unknown or names}: choose from {', '.join(METRICS)} "
            "(relative_diffusivity comes with tortuosity)"
        )
    return tuple(m for m in METRICS if m in chosen)


def characterise_volume(
    volume: np.ndarray, voxel_size: float | None = None, periodic: bool = False, selected: Sequence[str] = METRICS
) -> dict:
    """The record of one (D, H, W) label volume (without "path"); lengths in um, or voxels if voxel_size is None.

    periodic: faces and edges across the volume's boundary count, and the diffusion solve has periodic
    side faces (mirror, i.e. zero flux, otherwise).
    """
    volume = np.asarray(volume)
    dx = 1.0 if voxel_size is None else float(voxel_size)
    unit = "voxel" if voxel_size is None else "um"
    labels = tuple(int(v) for v in np.unique(volume))
    record: dict = {
        "shape": list(volume.shape),
        "voxel_size_um": voxel_size,
        "units": {"specific_surface_area": f"{unit}^-1", "tpb_density": f"{unit}^-2"},
    }
    if "volume_fraction" in selected:
        record["volume_fraction"] = _by_label(labels, metrics.volume_fraction(volume, labels))
    if "specific_surface_area" in selected:
        record["specific_surface_area"] = _by_label(labels, metrics.specific_surface_area(volume, dx, labels, periodic))
    if "tpb_density" in selected:
        record["tpb_density"] = (
            float(metrics.triple_phase_boundary_density(volume, dx, labels, periodic)) if len(labels) == 3 else None
        )
    if "tortuosity" in selected:
        side = "periodic" if periodic else "mirror"
        solves = [[metrics.tortuosity(volume, a, side, phase=lab) for a in range(3)] for lab in labels]
        record["tortuosity"] = _by_label(labels, [[s.tau for s in row] for row in solves])
        record["relative_diffusivity"] = _by_label(labels, [[s.relative_diffusivity for s in row] for row in solves])
    return record


def _by_label(labels: Sequence[int], values) -> dict:
    """Per-phase values (P,) or per phase and axis (P, 3) -> {"<label>": v} or {"<label>": {"x", "y", "z"}}."""
    values = np.asarray(values, np.float64)
    if values.ndim == 1:
        return {str(lab): float(v) for lab, v in zip(labels, values)}
    return {str(lab): dict(zip(AXES, map(float, row))) for lab, row in zip(labels, values)}


def characterise_files(
    paths: Sequence[str | os.PathLike],
    voxel_size: float | None = None,
    periodic: bool = False,
    selected: Sequence[str] = METRICS,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """{"volumes": [record, ...]} for label files; voxel_size (um) overrides each TIFF's recorded one."""
    records = []
    for i, path in enumerate(paths, 1):
        if progress is not None and len(paths) > 1:
            progress(f"[{i}/{len(paths)}] {path}")
        size = voxel_size if voxel_size is not None else read_voxel_size(path)
        record = characterise_volume(read_volume(path), size, periodic, selected)
        records.append({"path": str(path), **record})
    return {"volumes": records}


def table(record: dict) -> str:
    """A readable multi-line summary of one record: a header line, then one row per phase."""
    unit = record["units"]["specific_surface_area"]
    size = "unknown: lengths per voxel" if record["voxel_size_um"] is None else f"{record['voxel_size_um']:g} um"
    head = f"{record['path']}: {'x'.join(map(str, record['shape']))}, voxel {size}"
    if record.get("tpb_density") is not None:
        head += f", TPB {record['tpb_density']:.4g} {record['units']['tpb_density']}"
    columns = [("vol.frac", "volume_fraction", None), (f"SSA {unit}", "specific_surface_area", None)]
    columns += [(f"tau_{a}", "tortuosity", a) for a in AXES] + [(f"Drel_{a}", "relative_diffusivity", a) for a in AXES]
    columns = [c for c in columns if c[1] in record]
    labels = next((list(record[key]) for _, key, _ in columns), [])
    lines = [head, "  " + " ".join(f"{h:>11}" for h in ["phase"] + [c[0] for c in columns])]
    for label in labels:
        cells = [record[key][label] if axis is None else record[key][label][axis] for _, key, axis in columns]
        lines.append("  " + " ".join(f"{v:>11}" for v in [label] + [f"{c:.4g}" for c in cells]))
    return "\n".join(lines)
