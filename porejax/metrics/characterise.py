"""All metrics of a label volume (or a batch) in one dict of plain numbers (JSON only when written: porejax.jsonio)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from porejax.axes import AXES
from porejax.metrics._common import as_batch, check_voxel_size, phase_labels
from porejax.metrics.correlation import two_point_correlation
from porejax.metrics.morphology import specific_surface_area, tpb_edge_count, volume_fraction
from porejax.metrics.diffusion import tortuosity as solve_tortuosity


def characterise(
    labels,
    voxel_size: float,
    phases: Sequence[int] | None = None,
    tortuosity: bool = True,
    tpcf: bool = True,
    periodic: bool = False,
    devices=None,
) -> dict | list[dict]:
    """Every metric for every phase and all three axes.

    labels: (D, H, W) label volume, or a batch (B, D, H, W) -> a list of B dicts (one per volume).
    voxel_size: um. phases: labels to report (default: the labels present in the whole input).
    periodic: SSA/TPB count wrap-around faces/edges, S2 wraps, and diffusion uses periodic side faces.
    devices: the devices each diffusion solve is partitioned over (default: all local accelerators; on a
    CPU one device, since CPU devices share the same cores and a partitioned solve only adds collectives).

    Each dict (plain Python numbers, no NaN; tau is inf where no path spans the volume):
      {"voxel_size_um", "shape", "tpb_density" (1/um^2, null unless exactly three phases),
       "tpcf_lag_um": lags of the S2 lists,
       "phases": {"<label>": {"volume_fraction", "specific_surface_area" (1/um),
                              "tortuosity": {"x","y","z"}, "relative_diffusivity": {"x","y","z"},
                              "tpcf": {"x","y","z"}: S2 at lags 0.. along array axes 0, 1, 2}}}
    x, y, z are array axes 0, 1, 2. Tortuosity/tpcf keys are omitted when switched off.
    """
    dx = check_voxel_size(voxel_size)
    batch, batched = as_batch(labels, "labels")
    labels_t = phase_labels(batch, phases)
    fractions = volume_fraction(batch, labels_t)
    surfaces = specific_surface_area(batch, dx, labels_t, periodic)
    n_voxels = np.prod(batch.shape[1:])
    tpb = (
        tpb_edge_count(batch, labels_t, periodic) / (n_voxels * dx * dx) if len(labels_t) == 3 else [None] * len(batch)
    )
    out = [
        {
            "voxel_size_um": dx,
            "shape": list(batch.shape[1:]),
            "tpb_density": None if t is None else float(t),
            "phases": {},
        }
        for t in tpb
    ]
    side = "periodic" if periodic else "mirror"
    if devices is None:
        devices = jax.local_devices() if jax.default_backend() != "cpu" else jax.local_devices()[:1]
    for lab in labels_t:
        mask = batch == lab
        per_axis_tau, per_axis_rel, per_axis_s2 = {}, {}, {}
        for axis, name in enumerate(AXES):
            if tortuosity:
                result = solve_tortuosity(mask, axis=axis, side_boundary=side, devices=devices)
                per_axis_tau[name], per_axis_rel[name] = result.tau, result.relative_diffusivity
            if tpcf:
                lags, per_axis_s2[name] = two_point_correlation(mask, axis=axis, periodic=periodic, voxel_size=dx)
        for i, record in enumerate(out):
            phase = {"volume_fraction": fractions[i][lab], "specific_surface_area": surfaces[i][lab]}
            if tortuosity:
                phase["tortuosity"] = {k: float(v[i]) for k, v in per_axis_tau.items()}
                phase["relative_diffusivity"] = {k: float(v[i]) for k, v in per_axis_rel.items()}
            if tpcf:
                phase["tpcf"] = {k: [float(s) for s in v[i]] for k, v in per_axis_s2.items()}
                record["tpcf_lag_um"] = [float(r) for r in lags]
            record["phases"][str(lab)] = phase
    return out if batched else out[0]
