"""All metrics of a label volume (or a batch) as one `Characterisation` of arrays (JSON only when written:
porejax.jsonio, porejax.characterise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_batch, check_voxel_size, phase_labels, single_or_batch
from porejax.metrics.correlation import default_max_lag, two_point_correlation
from porejax.metrics.morphology import specific_surface_area, tpb_edge_count, volume_fraction
from porejax.metrics.diffusion import tortuosity as solve_tortuosity


class Characterisation(NamedTuple):
    """Metrics of B volumes with P phases; phases in `labels` order, axes x, y, z (porejax.axes.AXES).

    Per-volume fields lead with the batch axis (B, ...), dropped for a single (D, H, W) input; `labels`,
    `voxel_size_um` and `tpcf_lag_um` are shared by the batch. Fields that were not computed are None.

    labels: (P,) label values. voxel_size_um: voxel edge length (um; lengths below are in um).
    volume_fraction (B, P). specific_surface_area (B, P), 1/um. tpb_density (B,), 1/um^2, None unless P == 3.
    tortuosity (B, P, 3): tau along x, y, z, inf without a spanning path. relative_diffusivity (B, P, 3):
    D_eff / D0 = phi / tau, 0 without a spanning path. tpcf_lag_um (L,) lags of tpcf (B, P, 3, L): S2 along
    x, y, z at lags 0..L-1 voxels (tpcf[..., 0] = volume fraction), L the default number of lags
    (`correlation.default_max_lag`) of the shortest axis.
    """

    labels: tuple[int, ...]
    voxel_size_um: float
    volume_fraction: np.ndarray
    specific_surface_area: np.ndarray
    tpb_density: np.ndarray | None = None
    tortuosity: np.ndarray | None = None
    relative_diffusivity: np.ndarray | None = None
    tpcf_lag_um: np.ndarray | None = None
    tpcf: np.ndarray | None = None


_PER_VOLUME = tuple(f for f in Characterisation._fields if f not in ("labels", "voxel_size_um", "tpcf_lag_um"))


def characterise(
    labels,
    voxel_size: float,
    phases: Sequence[int] | None = None,
    tortuosity: bool = True,
    tpcf: bool = True,
    periodic: bool = False,
    devices=None,
) -> Characterisation:
    """Every metric for every phase and all three axes.

    labels: (D, H, W) label volume or a batch (B, D, H, W). voxel_size: um. phases: labels to report
    (default: the labels present in the whole input, sorted). tortuosity / tpcf: compute those fields.
    periodic: SSA/TPB count wrap-around faces/edges, S2 wraps, and diffusion uses periodic side faces.
    devices: the devices each diffusion solve is partitioned over (default: all local accelerators; on a
    CPU one device, since CPU devices share the same cores and a partitioned solve only adds collectives).
    """
    dx = check_voxel_size(voxel_size)
    batch, batched = as_batch(labels, "labels")
    labels_t = phase_labels(batch, phases)
    tpb = None
    if len(labels_t) == 3:
        tpb = tpb_edge_count(batch, labels_t, periodic) / (np.prod(batch.shape[1:]) * dx * dx)
    result = Characterisation(
        labels_t, dx, volume_fraction(batch, labels_t), specific_surface_area(batch, dx, labels_t, periodic), tpb
    )
    side = "periodic" if periodic else "mirror"
    if devices is None:
        devices = jax.local_devices() if jax.default_backend() != "cpu" else jax.local_devices()[:1]
    if tortuosity:
        solves = [[solve_tortuosity(batch == lab, a, side, devices=devices) for a in range(3)] for lab in labels_t]
        result = result._replace(
            tortuosity=_batch_first([[s.tau for s in row] for row in solves]),
            relative_diffusivity=_batch_first([[s.relative_diffusivity for s in row] for row in solves]),
        )
    if tpcf:
        lags = min(default_max_lag(n, periodic) for n in batch.shape[1:])  # one lag axis for x, y and z
        s2 = [[two_point_correlation(batch == lab, a, periodic, lags, dx) for a in range(3)] for lab in labels_t]
        result = result._replace(tpcf_lag_um=s2[0][0].r, tpcf=_batch_first([[c.s2 for c in row] for row in s2]))
    return _map_per_volume(lambda v: single_or_batch(v, batched), result)


def _batch_first(per_phase_and_axis: list[list[np.ndarray]]) -> np.ndarray:
    """[phase][axis] arrays (B, ...) -> one (B, P, 3, ...) array."""
    return np.moveaxis(np.asarray(per_phase_and_axis), 2, 0)


def concatenate(parts: Sequence[Characterisation]) -> Characterisation:
    """Characterisations of batches (same labels, voxel size and lags) -> one of all their volumes."""
    first = parts[0]
    if any(p.labels != first.labels or p.voxel_size_um != first.voxel_size_um for p in parts):
        raise PorejaxError("characterisations to concatenate must share labels and voxel size")
    fields = [f for f in _PER_VOLUME if getattr(first, f) is not None]
    return first._replace(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def take_volumes(result: Characterisation, index) -> Characterisation:
    """The Characterisation of the volumes `index` (a slice or index array) of a batch's."""
    return _map_per_volume(lambda v: v[index], result)


def _map_per_volume(fn, result: Characterisation) -> Characterisation:
    """`fn` applied to every computed per-volume field (those with the batch axis)."""
    return result._replace(**{f: fn(getattr(result, f)) for f in _PER_VOLUME if getattr(result, f) is not None})
