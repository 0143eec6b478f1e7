"""Counting metrics of label volumes: volume fraction, specific surface area, triple-phase-boundary density.

Definitions (DESIGN.md, "Metrics: exact definitions"), N voxels of edge dx (micrometres):
- volume fraction phi_i = (voxels of phase i) / N;
- specific surface area S_i = (voxel faces between phase i and any other phase) * dx^2 / (N dx^3), in 1/um;
  faces on the outer boundary count only when `periodic` (then the volume wraps around);
- TPB density = (voxel edges whose four surrounding voxels hold all three chosen phases) * dx / (N dx^3),
  in 1/um^2; only interior edges unless `periodic`.

Every function accepts one volume (D, H, W) or a batch (B, D, H, W) and returns plain numpy arrays, phases
along the last axis in the order of `phases` (see porejax.metrics for the single-volume rule). The jitted
cores return per-layer integer counts that the wrappers add up in int64, so counts stay exact for any volume size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_batch, check_voxel_size, device_labels, phase_labels, single_or_batch


def _neighbour_pairs(x: jax.Array, axis: int, periodic: bool) -> tuple[jax.Array, jax.Array]:
    """(x, x shifted by +1 along `axis`), cropped (open) or wrapped (periodic)."""
    if periodic:
        return x, jnp.roll(x, -1, axis=axis)
    n = x.shape[axis]
    return _slice(x, axis, 0, n - 1), _slice(x, axis, 1, n)


def _slice(x: jax.Array, axis: int, start: int, stop: int) -> jax.Array:
    return jax.lax.slice_in_dim(x, start, stop, axis=axis)


@functools.partial(jax.jit, static_argnames="periodic")
def _face_counts(labels: jax.Array, phases: jax.Array, periodic: bool) -> jax.Array:
    """labels (B, D, H, W), phases (P,) -> (B, D, P) int32 interface face counts per layer along D."""
    onehot = labels[..., None] == phases  # (B, D, H, W, P)
    per_layer = jnp.zeros((labels.shape[0], labels.shape[1], phases.shape[0]), jnp.int32)
    for axis in (1, 2, 3):
        a, b = _neighbour_pairs(onehot, axis, periodic)
        faces = jnp.sum(a != b, axis=(2, 3), dtype=jnp.int32)  # (B, D or D-1, P)
        per_layer = per_layer.at[:, : faces.shape[1]].add(faces)
    return per_layer


@functools.partial(jax.jit, static_argnames="periodic")
def _tpb_counts(labels: jax.Array, phases: jax.Array, periodic: bool) -> jax.Array:
    """labels (B, D, H, W), phases (3,) -> (B, D) int32 TPB edge counts per layer along axis 1."""
    onehot = labels[..., None] == phases  # (B, D, H, W, 3)
    per_layer = jnp.zeros(labels.shape[:2], jnp.int32)
    for edge_axis in (1, 2, 3):
        u, v = (ax for ax in (1, 2, 3) if ax != edge_axis)
        x0, x1 = _neighbour_pairs(onehot, u, periodic)
        present = x0 | x1
        p0, p1 = _neighbour_pairs(present, v, periodic)
        triple = jnp.all(p0 | p1, axis=-1)
        edges = jnp.sum(triple, axis=(2, 3), dtype=jnp.int32)
        per_layer = per_layer.at[:, : edges.shape[1]].add(edges)
    return per_layer


def volume_fraction(labels, phases: Sequence[int] | None = None) -> np.ndarray:
    """Volume fraction of each phase label (absent phases give 0).

    labels: (D, H, W) or (B, D, H, W) integer labels. phases: labels to report, in this order (default:
    the labels present, sorted, i.e. PhaseMap order). Returns (P,) float64, or (B, P) for a batch.
    """
    batch, batched = as_batch(labels, "labels")
    labels_t = phase_labels(batch, phases)
    counts = np.stack([np.count_nonzero(batch == lab, axis=(1, 2, 3)) for lab in labels_t], axis=1)
    return single_or_batch(counts / np.prod(batch.shape[1:]), batched)


def specific_surface_area(
    labels, voxel_size: float, phases: Sequence[int] | None = None, periodic: bool = False
) -> np.ndarray:
    """Specific surface area (1/um) of each phase by face counting.

    labels: (D, H, W) or (B, D, H, W). voxel_size: edge length in um. phases: as `volume_fraction`.
    periodic: count the wrap-around faces. Returns (P,) float64, or (B, P) for a batch.
    """
    dx = check_voxel_size(voxel_size)
    batch, batched = as_batch(labels, "labels")
    labels_t = phase_labels(batch, phases)
    per_layer = np.asarray(_face_counts(*device_labels(batch, labels_t), periodic))
    counts = per_layer.sum(axis=1, dtype=np.int64)  # (B, P)
    return single_or_batch(counts / (np.prod(batch.shape[1:]) * dx), batched)


def tpb_edge_count(labels, phases: Sequence[int] | None = None, periodic: bool = False) -> np.ndarray:
    """Number of TPB edges: (B,) int64 for (B, D, H, W) input, a numpy int64 for one volume."""
    batch, batched = as_batch(labels, "labels")
    labels_t = phase_labels(batch, phases)
    if len(labels_t) != 3:
        raise PorejaxError(
            f"TPB needs exactly three phases, got labels {list(labels_t)}: pass phases=(a, b, c) to choose three"
        )
    counts = np.asarray(_tpb_counts(*device_labels(batch, labels_t), periodic))
    return single_or_batch(counts.sum(axis=1, dtype=np.int64), batched)


def triple_phase_boundary_density(
    labels, voxel_size: float, phases: Sequence[int] | None = None, periodic: bool = False
) -> np.ndarray:
    """Triple-phase-boundary density (1/um^2) by edge counting.

    phases: the three phase labels (required when the volume holds more than three phases).
    Returns (B,) float64 for a batch, a numpy float64 for one volume.
    """
    dx = check_voxel_size(voxel_size)
    count = tpb_edge_count(labels, phases, periodic)
    return count / (np.prod(np.shape(labels)[-3:]) * dx * dx)
