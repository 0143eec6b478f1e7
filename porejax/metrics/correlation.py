"""Two-point correlation S2(r) = P(x in phase and x + r in phase), by FFT.

Non-periodic (default) is exact: the mask is zero-padded so no lag wraps around, and each lag vector is
divided by its number of valid pairs prod_a (n_a - |r_a|); hence s2[0] equals the volume fraction.
Periodic mode wraps around (circular autocorrelation / N).

Radial mode (axis=None) averages S2 over all lag vectors whose length |r| (in voxels) lies in
[k, k + 1) for bin k = 0 .. max_lag - 1, each lag vector weighted equally, and reports the bin centre
r = (k + 0.5) * voxel_size as PoreSpy does (bin 0 holds only r = 0, so s2[0] = phi). This reproduces
PoreSpy 3.2.0's radial binning (`bins` of one voxel up to min(shape) // 2) on zero-padded input.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax.metrics._common import as_mask_batch, check_axis, check_voxel_size, single_or_batch
from porejax.errors import PorejaxError


class TwoPointCorrelation(NamedTuple):
    """S2 of a phase, unpacked as `r, s2 = two_point_correlation(...)`.

    r: (L,) lags along the axis (0, 1, 2, ...) or radial bin centres, in um when a voxel size is given,
    else in voxels; shared by every volume of a batch. s2: (B, L) float32, or (L,) for one volume; s2[..., 0]
    is the phase's volume fraction.
    """

    r: np.ndarray
    s2: np.ndarray


@functools.lru_cache(maxsize=32)
def _radial_bins(max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin index floor(|r|) of every lag vector in the cube [-(max_lag - 1), max_lag - 1]^3, flattened
    (max_lag marks lags beyond the last bin), and the number of lag vectors per bin (max_lag + 1,)."""
    lags = np.arange(-(max_lag - 1), max_lag)
    dist = np.sqrt(lags[:, None, None] ** 2 + lags[None, :, None] ** 2 + lags[None, None, :] ** 2)
    bins = np.minimum(np.floor(dist + 1e-9), max_lag).astype(np.int32).ravel()
    return bins, np.bincount(bins, minlength=max_lag + 1)


def _autocorrelation(mask: jax.Array, axes: tuple[int, ...], max_lag: int, periodic: bool) -> jax.Array:
    """Autocorrelation sums for lags -(max_lag-1)..max_lag-1 along `axes` (lag 0 at index max_lag - 1).

    mask (B, D, H, W) float. Returns (B, ...) with the lag axes of length 2 * max_lag - 1 (the other axes
    summed over). Non-periodic sums count valid pairs only (zero padding to n + max_lag).
    """
    sizes = [mask.shape[a] if periodic else mask.shape[a] + max_lag for a in axes]
    spec = jnp.fft.rfftn(mask, s=sizes, axes=axes)
    corr = jnp.fft.irfftn(spec * jnp.conj(spec), s=sizes, axes=axes)
    other = tuple(a for a in (1, 2, 3) if a not in axes)
    corr = jnp.sum(corr, axis=other, keepdims=True)
    for a in axes:
        corr = jnp.roll(corr, max_lag - 1, axis=a)
        corr = jax.lax.slice_in_dim(corr, 0, 2 * max_lag - 1, axis=a)
    return jnp.squeeze(corr, axis=other)


@functools.partial(jax.jit, static_argnames=("axis", "max_lag", "periodic"))
def _s2_axis_counts(mask: jax.Array, axis: int, max_lag: int, periodic: bool) -> jax.Array:
    """mask (B, D, H, W) -> (B, rows, max_lag) int32: pairs in the phase at lags 0..max_lag-1 along array
    axis `axis` (1..3), summed over the lines of each row (rows: axis 1, or axis 2 when axis is 1).

    Each line's FFT autocorrelation is an integer up to rounding (far below 0.5 for any line length in
    float32), so it is rounded before the sums: the counts are exact, whatever slabs they are summed over.
    """
    size = mask.shape[axis] if periodic else mask.shape[axis] + max_lag
    spec = jnp.fft.rfft(mask, n=size, axis=axis)
    corr = jax.lax.slice_in_dim(jnp.fft.irfft(spec * jnp.conj(spec), n=size, axis=axis), 0, max_lag, axis=axis)
    counts = jnp.round(corr).astype(jnp.int32)
    row = 2 if axis == 1 else 1
    counts = jnp.sum(counts, axis=tuple(a for a in (1, 2, 3) if a not in (axis, row)))
    return jnp.swapaxes(counts, 1, 2) if axis < row else counts  # (B, rows, lags)


def s2_from_counts(counts: np.ndarray, n: int, voxels: int, periodic: bool) -> np.ndarray:
    """S2 (B, max_lag) float32 from pair counts (B, max_lag) (int64) along an axis of `n` voxels in a volume
    of `voxels`: counts / valid pairs, so S2(0) = phi exactly."""
    lags = np.arange(counts.shape[-1])
    pairs = (n if periodic else n - lags) * (voxels // n)
    return (counts / pairs).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("max_lag", "periodic"))
def _s2_radial(mask: jax.Array, max_lag: int, periodic: bool) -> jax.Array:
    """mask (B, D, H, W) -> (B, max_lag) radially binned S2."""
    corr = _autocorrelation(mask, (1, 2, 3), max_lag, periodic)
    lags = jnp.arange(-(max_lag - 1), max_lag)
    if periodic:
        pairs = jnp.full((lags.size,) * 3, mask[0].size, mask.dtype)
    else:
        d, h, w = mask.shape[1:]
        pairs = (
            (d - jnp.abs(lags))[:, None, None] * (h - jnp.abs(lags))[None, :, None] * (w - jnp.abs(lags))[None, None, :]
        ).astype(mask.dtype)
    s2 = (corr / pairs).reshape(mask.shape[0], -1)
    bins, counts = _radial_bins(max_lag)
    sums = jax.vmap(lambda v: jax.ops.segment_sum(v, jnp.asarray(bins), num_segments=max_lag + 1))(s2)
    return (sums[:, :max_lag] / counts[:max_lag]).at[:, 0].set(jnp.mean(mask, axis=(1, 2, 3)))


def _lag_limit(n: int, periodic: bool) -> int:
    """Lags available along `n` voxels: n, or half of it rounded up when periodic (later lags repeat)."""
    return (n + 1) // 2 if periodic else n


def default_max_lag(n: int, periodic: bool) -> int:
    """The default number of lags along `n` voxels: half the available ones, at least 1 (lag 0: phi)."""
    return max(1, _lag_limit(n, periodic) // 2)


def two_point_correlation(
    mask, axis: int | None = None, periodic: bool = False, max_lag: int | None = None, voxel_size: float | None = None
) -> TwoPointCorrelation:
    """Two-point correlation S2 of a binary phase mask.

    mask: (D, H, W) or (B, D, H, W), 0/1 or bool. axis: 0, 1 or 2 for S2 along that array axis (averaged
    over all positions), None for the radial average. max_lag: number of lags / radial bins (default
    `default_max_lag` of min(shape) for radial, of shape[axis] along an axis: half the side, at least 1; at
    most the side length, or half of it rounded up when periodic).
    voxel_size: um per voxel; r is in um when given, in voxels otherwise.

    Returns a TwoPointCorrelation (r, s2) with L = max_lag: r is the lag along the axis or the radial bin
    centre ((k + 0.5), see module doc); s2 is (L,) for one volume, (B, L) for a batch.
    """
    batch, batched = as_mask_batch(mask, "mask")
    scale = 1.0 if voxel_size is None else check_voxel_size(voxel_size)
    shape = batch.shape[1:]
    n = min(shape) if axis is None else shape[check_axis(axis)]
    limit = _lag_limit(n, periodic)
    lags = default_max_lag(n, periodic) if max_lag is None else int(max_lag)
    if not 1 <= lags <= limit:
        raise PorejaxError(f"max_lag must be between 1 and {limit} for shape {shape}, got {max_lag}")
    data = jnp.asarray(batch, jnp.float32)
    if axis is None:
        s2 = _s2_radial(data, lags, periodic)
        r = (np.arange(lags) + 0.5) * scale
    else:
        counts = np.asarray(_s2_axis_counts(data, axis + 1, lags, periodic)).sum(axis=1, dtype=np.int64)
        s2 = s2_from_counts(counts, shape[axis], int(np.prod(shape)), periodic)
        r = np.arange(lags) * scale
    return TwoPointCorrelation(r, single_or_batch(np.asarray(s2), batched))
