"""The multigrid preconditioner of the diffusion solve: 2x2x2 aggregation, Galerkin coarse operators,
damped-Jacobi smoothing, a symmetric V-cycle (an SPD preconditioner for conjugate gradients)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from porejax.metrics.stencil import System, matvec, with_g

_SMOOTHING_WEIGHT = 0.9  # damped Jacobi; < 1 keeps the smoother, hence the V-cycle, positive definite
SMOOTHING_SWEEPS = 1  # per level, before and after the coarse-grid correction
_COARSE_WEIGHT = 1.5  # scales the coarse-grid correction; in (0, 2) keeps the V-cycle positive definite
_COARSEST_SIZE = 256  # unknowns at most on the coarsest grid (dense inverse)


class Level(NamedTuple):
    """One multigrid level: its system and the damped-Jacobi weights _SMOOTHING_WEIGHT / diag (0 off the cluster)."""

    system: System
    weight: jax.Array


class Multigrid(NamedTuple):
    """Levels from fine to coarse (2x2x2 aggregation, Galerkin operators) and the coarsest inverse."""

    levels: tuple[Level, ...]
    coarse_inverse: jax.Array  # (n, n) dense inverse on the coarsest grid, n = its voxel count


def _pairs(x: jax.Array) -> jax.Array:
    """(a, b, c) -> (ceil(a/2), 2, ceil(b/2), 2, ceil(c/2), 2): zero-pad to even sizes and split pairs."""
    x = jnp.pad(x, [(0, n % 2) for n in x.shape])
    return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, x.shape[2] // 2, 2)


def restrict(x: jax.Array) -> jax.Array:
    """P^T x for piecewise-constant prolongation P: sums over 2x2x2 aggregates (as 8 strided slices, far
    faster on XLA CPU than a reduction)."""
    x = jnp.pad(x, [(0, n % 2) for n in x.shape])
    return sum(x[a::2, b::2, c::2] for a in (0, 1) for b in (0, 1) for c in (0, 1))


def prolong(xc: jax.Array, shape: tuple[int, int, int]) -> jax.Array:
    """P xc: each coarse value copied to the voxels of its aggregate."""
    x = jnp.broadcast_to(xc[:, None, :, None, :, None], (xc.shape[0], 2, xc.shape[1], 2, xc.shape[2], 2))
    x = x.reshape(2 * xc.shape[0], 2 * xc.shape[1], 2 * xc.shape[2])
    return x[: shape[0], : shape[1], : shape[2]]


def coarsen(system: System, periodic_sides: bool) -> System:
    """Galerkin operator P^T A P of 2x2x2 aggregation: again a 7-point conductance stencil.

    The coarse conductance between neighbouring aggregates sums the fine faces between them (including the
    periodic wrap face, which joins a lone last layer of an odd size to aggregate 0); the coarse diagonal
    sums the fine diagonal minus twice the faces inside each aggregate.
    """
    diag = restrict(system.diag)
    coarse_g = []
    for axis, g in enumerate(system.g):
        pairs = _pairs(g).sum(axis=tuple(2 * a + 1 for a in range(3) if a != axis))
        inside, across = (jnp.take(pairs, i, axis=axis + 1) for i in (0, 1))
        if g.shape[axis] % 2:  # lone last layer: its + face leaves the aggregate
            last = jax.lax.slice_in_dim(inside, inside.shape[axis] - 1, inside.shape[axis], axis=axis)
            pad = [(0, 0)] * 3
            pad[axis] = (inside.shape[axis] - 1, 0)
            across = across + jnp.pad(last, pad)
            inside = inside - jnp.pad(last, pad)
        coarse_g.append(across)
        diag = diag - 2 * inside
    return with_g(coarse_g, diag, jnp.zeros_like(diag), periodic_sides)


def dense(system: System, periodic_sides: bool) -> jax.Array:
    """The system matrix as a dense (n, n) array, with 1 on the diagonal of unknowns off the cluster."""
    shape = system.diag.shape
    n = system.diag.size
    basis = jnp.eye(n, dtype=system.diag.dtype).reshape(n, *shape)
    columns = jax.vmap(lambda e: matvec(system, e, periodic_sides).reshape(-1))(basis)
    return columns + jnp.diag((system.diag.reshape(-1) <= 0).astype(columns.dtype))


def build_multigrid(system: System, periodic_sides: bool) -> Multigrid:
    """Coarsen by 2x2x2 aggregation until at most `_COARSEST_SIZE` unknowns remain (once, before CG)."""
    levels = []
    while system.diag.size > _COARSEST_SIZE:
        active = system.diag > 0
        levels.append(Level(system, jnp.where(active, _SMOOTHING_WEIGHT / jnp.where(active, system.diag, 1), 0)))
        system = coarsen(system, periodic_sides)
    inverse = jnp.linalg.inv(dense(system, periodic_sides)) * (system.diag > 0).reshape(-1)
    return Multigrid(tuple(levels), inverse)


def v_cycle(mg: Multigrid, r: jax.Array, periodic_sides: bool, sweeps: jax.Array, level: int = 0) -> jax.Array:
    """Symmetric V-cycle approximating A^-1 r: zero start, `sweeps` damped-Jacobi sweeps before and after
    the coarse-grid correction, restriction = prolongation^T, so an SPD preconditioner for CG.

    `sweeps` is a traced int32 >= 1 (never a constant): loops whose trip count XLA cannot fold are fusion
    boundaries, so every level's vectors are materialised once. Otherwise XLA fuses the whole multilevel
    stencil chain into one kernel that recomputes each coarse value for every fine neighbour (10-100x
    slower; `lax.optimization_barrier` does not prevent it on CPU).
    """
    if level == len(mg.levels):
        return (mg.coarse_inverse @ r.reshape(-1)).reshape(r.shape)
    lv = mg.levels[level]

    def sweep(_, x: jax.Array) -> jax.Array:
        return x + lv.weight * (r - matvec(lv.system, x, periodic_sides))

    def pre_sweep(_, x_and_residual: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x, residual = x_and_residual  # the residual leaves the loop materialised, ready for the restriction
        x = x + lv.weight * residual
        return x, r - matvec(lv.system, x, periodic_sides)

    x, residual = jax.lax.fori_loop(0, sweeps, pre_sweep, (jnp.zeros_like(r), r))
    x = x + _COARSE_WEIGHT * prolong(v_cycle(mg, restrict(residual), periodic_sides, sweeps, level + 1), r.shape)
    return jax.lax.fori_loop(0, sweeps, sweep, x)
