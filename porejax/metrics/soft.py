"""Differentiable (soft) counting metrics on phase probabilities: volume fraction, SSA, TPB density.

p: phase probabilities (D, H, W, P), or a batch (B, D, H, W, P), channels last as the generator makes
them; each voxel's P values sum to 1. Every estimator is the EXPECTED value of the exact counting metric
(porejax.metrics.morphology) when voxel v holds phase i with probability p_i(v), voxels independent, so on
one-hot p it equals the exact metric (same units, boundary rules, periodic option):

- volume fraction of phase i: mean of p_i;
- specific surface area (1/um): expected faces between phase i and another phase, p_i(a) (1 - p_i(b)) +
  p_i(b) (1 - p_i(a)) per face (a, b), times dx^2 / (N dx^3); outer faces only when `periodic`;
- TPB density (1/um^2): expected count of edges whose four surrounding voxels hold all three chosen
  phases, by inclusion-exclusion over which phases are absent, times dx / (N dx^3); interior edges only
  unless `periodic`.

Pure jnp functions: they run under jit, vmap and grad. Phases are channel indices of p (0..P-1), not labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from porejax.errors import PorejaxError


def _check(p: jax.Array) -> tuple[int, int, int]:
    """The spatial axes (as negative indices: -4, -3, -2) of (D, H, W, P) or (B, D, H, W, P) probabilities."""
    if p.ndim not in (4, 5):
        raise PorejaxError(f"phase probabilities have shape {p.shape}, expected (D, H, W, P) or (B, D, H, W, P)")
    return (-4, -3, -2)


def _pairs(x: jax.Array, axis: int, periodic: bool) -> tuple[jax.Array, jax.Array]:
    """(x, x shifted by +1 along `axis`), cropped to the interior pairs (open) or wrapped (periodic)."""
    if periodic:
        return x, jnp.roll(x, -1, axis=axis)
    n = x.shape[axis]
    return (jax.lax.slice_in_dim(x, 0, n - 1, axis=axis % x.ndim), jax.lax.slice_in_dim(x, 1, n, axis=axis % x.ndim))


def soft_volume_fraction(p: jax.Array) -> jax.Array:
    """(..., D, H, W, P) -> (..., P): the mean probability of each phase."""
    return jnp.mean(p, axis=_check(p))


def soft_face_count(p: jax.Array, periodic: bool = False) -> jax.Array:
    """(..., D, H, W, P) -> (..., P): expected number of faces between phase i and any other phase."""
    total = 0.0
    for axis in _check(p):
        a, b = _pairs(p, axis, periodic)
        total = total + jnp.sum(a * (1 - b) + b * (1 - a), axis=(-4, -3, -2))
    return total


def soft_specific_surface_area(p: jax.Array, voxel_size: float, periodic: bool = False) -> jax.Array:
    """(..., D, H, W, P) -> (..., P) expected specific surface area in 1/um (voxel_size in um)."""
    n = p.shape[-4] * p.shape[-3] * p.shape[-2]
    return soft_face_count(p, periodic) / (n * voxel_size)


def _tpb_phases(p: jax.Array, phases: Sequence[int]) -> tuple[int, int, int]:
    phases = tuple(int(i) for i in phases)
    if len(phases) != 3 or len(set(phases)) != 3 or not all(0 <= i < p.shape[-1] for i in phases):
        raise PorejaxError(f"TPB needs three distinct phase indices in 0..{p.shape[-1] - 1}, got {list(phases)}")
    return phases  # type: ignore[return-value]


def soft_tpb_edge_count(p: jax.Array, phases: Sequence[int] = (0, 1, 2), periodic: bool = False) -> jax.Array:
    """(..., D, H, W, P) -> (...): expected number of edges whose four voxels hold all three `phases`.

    P(all present) = sum over subsets S of the three phases of (-1)^|S| P(no voxel holds a phase of S), and
    P(no voxel of the four holds S) is the product over the four of (1 - sum_{i in S} p_i).
    """
    phases = _tpb_phases(p, phases)
    subsets = [(), *[(i,) for i in phases], *[(i, j) for k, i in enumerate(phases) for j in phases[k + 1 :]], phases]
    absent = jnp.stack([1 - sum((p[..., i] for i in s), jnp.zeros(p.shape[:-1], p.dtype)) for s in subsets], -1)
    signs = jnp.asarray([(-1.0) ** len(s) for s in subsets], p.dtype)
    total = 0.0
    for edge_axis in _check(p):
        u, v = (ax for ax in (-4, -3, -2) if ax != edge_axis)
        a0, a1 = _pairs(absent, u, periodic)
        b0, b1 = _pairs(a0 * a1, v, periodic)
        total = total + jnp.sum((b0 * b1) @ signs, axis=(-3, -2, -1))
    return total


def soft_tpb_density(
    p: jax.Array, voxel_size: float, phases: Sequence[int] = (0, 1, 2), periodic: bool = False
) -> jax.Array:
    """(..., D, H, W, P) -> (...) expected TPB density in 1/um^2 (voxel_size in um)."""
    n = p.shape[-4] * p.shape[-3] * p.shape[-2]
    return soft_tpb_edge_count(p, phases, periodic) / (n * voxel_size * voxel_size)
