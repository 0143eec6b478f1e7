"""Counting metrics and two-point correlations of a volume too large for memory, read slab by slab.

`morphology_by_slabs` takes anything with `.shape` whose `[a:b]` gives the label layers a..b-1 as an
array: a numpy array, or a `porejax.store.StoreVolume` (which reads only those chunks). Each slab is
counted with the same jitted per-layer kernels as the in-memory metrics (`porejax.metrics.morphology`),
with one extra layer from the next slab (or, periodic, from the first) so that the faces and edges
between slabs are counted once; the integer counts, hence the results, are exactly the in-memory ones.
`s2_by_slabs` counts pairs along an axis in slabs along another axis (x, or y for S2 along x), so every
line lies whole in one slab; its counts are exact integers too (`correlation._s2_axis_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import check_voxel_size, device_labels
from porejax.metrics.characterise import Characterisation
from porejax.metrics.correlation import TwoPointCorrelation, _s2_axis_counts, default_max_lag, s2_from_counts
from porejax.metrics.morphology import _face_counts, _tpb_counts


def _slab_counts(volume, labels: Sequence[int], periodic: bool, slab: int, tpb: bool):
    """(voxel counts (P,), face counts (P,), TPB edge count) int64, slab by slab along x."""
    n = volume.shape[0]
    voxels, faces, edges = np.zeros(len(labels), np.int64), np.zeros(len(labels), np.int64), np.int64(0)
    for a in range(0, n, slab):
        b = min(n, a + slab)
        layers = np.asarray(volume[a:b])
        halo = volume[b : b + 1] if b < n else (volume[0:1] if periodic else None)
        chunk = layers if halo is None else np.concatenate([layers, np.asarray(halo)])
        voxels += [np.count_nonzero(layers == lab) for lab in labels]
        # the halo's own row (faces inside it, and wrapped ones) belongs to the next slab: dropped
        batch, phases = device_labels(chunk[None], labels)
        faces += np.asarray(_face_counts(batch, phases, periodic))[0, : b - a].sum(axis=0, dtype=np.int64)
        if tpb:
            edges += np.asarray(_tpb_counts(batch, phases, periodic))[0, : b - a].sum(dtype=np.int64)
    return voxels, faces, edges


def morphology_by_slabs(
    volume, voxel_size: float, phases: Sequence[int], periodic: bool = False, slab: int = 64
) -> Characterisation:
    """Volume fraction and specific surface area (1/um) per phase and, for three phases, the TPB density
    (1/um^2) of a (D, H, W) label volume read `slab` x-layers at a time (D >= 1).

    phases: the label values to report (a store's PhaseMap: `StoreVolume.attributes["phase_map"]["labels"]`).
    Returns the Characterisation of one volume with volume_fraction (P,), specific_surface_area (P,) and
    tpb_density (a number, None unless P == 3), equal to those of `characterise` on the whole volume in
    memory; tortuosity and tpcf are None.
    """
    dx = check_voxel_size(voxel_size)
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3 or min(shape) < 1:
        raise PorejaxError(f"volume has shape {shape}, expected a non-empty (D, H, W) label volume")
    if int(slab) != slab or slab < 1:
        raise PorejaxError(f"slab must be a positive number of x-layers, got {slab}")
    labels = tuple(int(v) for v in phases)
    voxels, faces, edges = _slab_counts(volume, labels, periodic, int(slab), len(labels) == 3)
    n = np.prod(shape)
    tpb = edges / (n * dx * dx) if len(labels) == 3 else None
    return Characterisation(labels, dx, voxels / n, faces / (n * dx), tpb)


def s2_by_slabs(volume, label: int, axis: int, periodic: bool = False, slab: int = 64) -> TwoPointCorrelation:
    """S2 of phase `label` along array `axis` (0, 1, 2) of a (D, H, W) volume read `slab` layers at a time:
    (r (L,) lags in voxels, s2 (L,) float32), equal to `two_point_correlation` with its default max_lag."""
    shape = tuple(int(s) for s in volume.shape)
    if axis not in (0, 1, 2):
        raise PorejaxError(f"axis must be 0, 1 or 2 (x, y, z), got {axis!r}")
    n = shape[axis]
    lags = default_max_lag(n, periodic)
    along = 1 if axis == 0 else 0  # the slab axis: any other than the lag axis
    counts = np.zeros(lags, np.int64)
    for a in range(0, shape[along], slab):
        index = (slice(None),) * along + (slice(a, min(a + slab, shape[along])),)
        mask = (np.asarray(volume[index]) == label).astype(np.float32)[None]
        counts += np.asarray(_s2_axis_counts(mask, axis + 1, lags, periodic))[0].sum(axis=0, dtype=np.int64)
    s2 = s2_from_counts(counts[None], n, int(np.prod(shape)), periodic)[0]
    return TwoPointCorrelation(np.arange(lags, dtype=np.float64), s2)
