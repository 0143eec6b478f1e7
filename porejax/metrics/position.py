"""Phase fractions as a function of distance from the nearest face: does a volume hold the same material
at its faces as inside?

A sample of a stationary material has the same expected phase fractions in every voxel. A generator that
is unfaithful near the faces of its output (e.g. one trained on periodic latents, run with zero padding)
shows a "face band": fractions that depend on the distance to the nearest face.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_batch, phase_labels, single_or_batch


class FaceProfile(NamedTuple):
    """Per-volume phase fractions in bands of distance from the nearest face.

    band_start: (K,) first distance (voxels) of each band; band k holds distances [start_k, start_k+1).
    fractions: (B, K, P) phase fraction of band k in volume b for labels[p]; (K, P) for one volume.
    labels: (P,) the label values of the last axis. band_start and labels are shared by the batch.
    """

    band_start: np.ndarray
    fractions: np.ndarray
    labels: tuple[int, ...]


def face_distance(shape: Sequence[int], axes: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """Integer distance (voxels) of every voxel of a (D, H, W) volume from the nearest face normal to one of
    `axes` (0 for the outer layer)."""
    if len(shape) != 3:
        raise PorejaxError(f"face distances need a 3D shape, got {tuple(shape)}")
    dist = np.full(tuple(shape), np.iinfo(np.int32).max, np.int32)
    for axis in axes:
        n = shape[axis]
        d = np.minimum(np.arange(n), n - 1 - np.arange(n)).astype(np.int32)
        dist = np.minimum(dist, d.reshape([-1 if a == axis else 1 for a in range(3)]))
    return dist


def face_profile(
    volumes, band: int = 4, phases: Sequence[int] | None = None, axes: Sequence[int] = (0, 1, 2)
) -> FaceProfile:
    """Phase fractions of each volume (D, H, W) or batch (B, D, H, W) in bands of `band` voxels of distance
    from the nearest face normal to one of `axes` (default: all six faces). Bands beyond the centre are
    merged into the last one."""
    batch, batched = as_batch(volumes)
    if int(band) != band or band < 1:
        raise PorejaxError(f"band must be a positive number of voxels, got {band!r}")
    labels = phase_labels(batch, phases)
    band_index = face_distance(batch.shape[1:], axes) // int(band)
    n_bands = int(band_index.max()) + 1
    counts = np.bincount(band_index.ravel(), minlength=n_bands).astype(np.float64)
    fractions = np.empty((len(batch), n_bands, len(labels)))
    for p, label in enumerate(labels):
        for b, volume in enumerate(batch):
            hits = np.bincount(band_index.ravel(), weights=(volume == label).ravel(), minlength=n_bands)
            fractions[b, :, p] = hits / counts
    return FaceProfile(np.arange(n_bands) * int(band), single_or_batch(fractions, batched), labels)
