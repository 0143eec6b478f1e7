"""The finite-volume system of steady diffusion on a voxel grid, transport along axis 0 (see
porejax.metrics.diffusion for the physics): face conductances, the matrix-free product A x, plane fluxes."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def shift(x: jax.Array, axis: int, step: int, periodic: bool) -> jax.Array:
    """y[i] = x[i + step] along `axis` (step = +-1), wrapping when periodic, else zero beyond the edge."""
    if periodic:
        return jnp.roll(x, -step, axis=axis)
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    if step > 0:
        pad[axis] = (0, 1)
        return jnp.pad(jax.lax.slice_in_dim(x, 1, n, axis=axis), pad)
    pad[axis] = (1, 0)
    return jnp.pad(jax.lax.slice_in_dim(x, 0, n - 1, axis=axis), pad)


def harmonic(a: jax.Array, b: jax.Array) -> jax.Array:
    total = a + b
    return jnp.where(total > 0, 2 * a * b / jnp.where(total > 0, total, 1), 0)


class System(NamedTuple):
    """Face conductances towards +1 (g) and -1 (g_down) along each axis (zero at open edges), diagonal,
    right-hand side. g_down[k] = g[k] shifted by one voxel: stored so that A x only shifts x."""

    g: tuple[jax.Array, jax.Array, jax.Array]
    g_down: tuple[jax.Array, jax.Array, jax.Array]
    diag: jax.Array
    rhs: jax.Array


def with_g(g: tuple[jax.Array, ...], diag: jax.Array, rhs: jax.Array, periodic_sides: bool) -> System:
    g_down = tuple(shift(g[k], k, -1, periodic_sides and k > 0) for k in range(3))
    return System(tuple(g), g_down, diag, rhs)


def build_system(d: jax.Array, periodic_sides: bool) -> System:
    g = tuple(harmonic(d, shift(d, axis, 1, periodic_sides and axis > 0)) for axis in range(3))
    boundary = jnp.zeros_like(d).at[0].add(2 * d[0]).at[-1].add(2 * d[-1])
    diag = boundary
    for axis in range(3):
        diag = diag + g[axis] + shift(g[axis], axis, -1, periodic_sides and axis > 0)
    rhs = jnp.zeros_like(d).at[-1].set(2 * d[-1])
    return with_g(g, diag, rhs, periodic_sides)


def matvec(system: System, x: jax.Array, periodic_sides: bool) -> jax.Array:
    """A x for the SPD system matrix A (x must be zero outside the conducting cluster)."""
    out = system.diag * x
    for axis in range(3):
        per = periodic_sides and axis > 0
        out = out - system.g[axis] * shift(x, axis, 1, per) - system.g_down[axis] * shift(x, axis, -1, per)
    return out


def plane_fluxes(system: System, x: jax.Array, x_low: jax.Array, d: jax.Array) -> jax.Array:
    """Total flux towards -axis 0 through the inlet face, each interface and the outlet face: (L + 1,).

    The concentration is x - x_low (compensated sum); differences are taken before adding the parts.
    """
    inlet = jnp.sum(2 * d[0] * (x[0] - x_low[0]))[None]
    inner = jnp.sum(system.g[0][:-1] * ((x[1:] - x[:-1]) - (x_low[1:] - x_low[:-1])), axis=(1, 2))
    outlet = jnp.sum(2 * d[-1] * ((1 - x[-1]) + x_low[-1]))[None]
    return jnp.concatenate([inlet, inner, outlet])
