"""The diffusion solve itself: spanning cluster, system and preconditioner (`prepare`), then preconditioned
conjugate gradients inside `lax.while_loop` (`solve`), with the float32 safeguards and the convergence test
described in porejax.metrics.diffusion; `solve_batch` maps both over a batch as two jitted calls."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from porejax.metrics.multigrid import SMOOTHING_SWEEPS, Multigrid, build_multigrid, v_cycle
from porejax.metrics.spanning import spanning_cluster
from porejax.metrics.stencil import System, build_system, matvec, plane_fluxes, shift

CHECK_EVERY = {"multigrid": 2, "jacobi": 10}  # CG iterations between convergence checks
_RESTART_GROWTH = 10.0  # restart CG when rz exceeds this multiple of its lowest check (rounding level)
_STALL_CHECKS = 50  # stop (converged=False) after this many checks without a new lowest flux spread


class _State(NamedTuple):
    x: jax.Array
    x_low: jax.Array  # compensated (Kahan) low part of x: float32 x alone stagnates at its rounding error
    r: jax.Array
    p: jax.Array
    rz: jax.Array
    rz_check: jax.Array  # lowest rz at a convergence check since the last restart (inf right after one)
    spread_best: jax.Array  # lowest flux spread so far
    stall: jax.Array  # checks since the flux spread last reached a new low
    iterations: jax.Array
    d_rel: jax.Array
    spread: jax.Array
    change: jax.Array


class Prepared(NamedTuple):
    """Everything the CG loop reads, computed by a separate jitted call (see `solve_batch`)."""

    d: jax.Array  # diffusivity, zero off the spanning cluster
    active: jax.Array  # the spanning cluster
    system: System
    preconditioner: Multigrid | jax.Array  # multigrid levels, or the Jacobi inverse diagonal


def prepare(d: jax.Array, periodic_sides: bool, preconditioner: str) -> Prepared:
    """diffusivity (L, H, W) >= 0, transport along axis 0 -> spanning cluster, system, preconditioner."""
    active = spanning_cluster(d > 0, periodic_sides)
    d = jnp.where(active, d, 0)
    system = build_system(d, periodic_sides)
    if preconditioner == "multigrid":
        return Prepared(d, active, system, build_multigrid(system, periodic_sides))
    return Prepared(d, active, system, jnp.where(active, 1 / jnp.where(active, system.diag, 1), 0))


def _preconditioner(
    prepared: Prepared, preconditioner: str, sweeps: jax.Array, periodic_sides: bool
) -> Callable[[jax.Array], jax.Array]:
    """r -> M^-1 r: one V-cycle (masked: prolongation also fills voxels off the cluster) or Jacobi."""
    if preconditioner == "multigrid":
        return lambda r: jnp.where(prepared.active, v_cycle(prepared.preconditioner, r, periodic_sides, sweeps), 0)
    return lambda r: prepared.preconditioner * r


def _initial_state(prepared: Prepared, precondition: Callable, periodic_sides: bool) -> _State:
    """CG's start: the linear ramp between the faces on the cluster, its residual and search direction."""
    d, active, system = prepared.d, prepared.active, prepared.system
    length = d.shape[0]
    ramp = (jnp.arange(length, dtype=d.dtype) + 0.5) / length
    x0 = jnp.where(active, ramp[:, None, None], 0)
    r0 = system.rhs - matvec(system, x0, periodic_sides)
    z0 = precondition(r0)
    inf = jnp.asarray(jnp.inf, d.dtype)
    zero = jnp.asarray(0)
    return _State(
        x0, jnp.zeros_like(x0), r0, z0, jnp.vdot(r0, z0), inf, inf, zero, zero, jnp.asarray(0, d.dtype), inf, inf
    )


def _cg_step(s: _State, system: System, precondition: Callable, periodic_sides: bool) -> _State:
    """One preconditioned CG iteration with a compensated (Kahan) update of x."""
    ap = matvec(system, s.p, periodic_sides)
    pap = jnp.vdot(s.p, ap)
    alpha = jnp.where(pap > 0, s.rz / jnp.where(pap > 0, pap, 1), 0)
    step = alpha * s.p - s.x_low
    x = s.x + step
    x_low = (x - s.x) - step
    r = s.r - alpha * ap
    z = precondition(r)
    rz = jnp.vdot(r, z)
    beta = jnp.where(s.rz > 0, rz / jnp.where(s.rz > 0, s.rz, 1), 0)
    return s._replace(x=x, x_low=x_low, r=r, p=z + beta * s.p, rz=rz)


def _check(s: _State, system: System, d: jax.Array, periodic_sides: bool, check_every: int) -> _State:
    """The convergence check after `check_every` CG iterations: D_rel, flux spread, change, stall count.

    float32 safeguards near rounding level, where the recursively updated residual drifts from b - A x
    and CG lets it grow (then blow up) instead of stagnating: residual replacement at every check, and a
    restart (p = 0; the next step sets p = z) when rz rose 10x above its lowest check. A spread that has
    made no new low for _STALL_CHECKS checks is at float rounding level: the loop stops there."""
    restart = s.rz > _RESTART_GROWTH * s.rz_check
    s = s._replace(
        r=system.rhs - matvec(system, s.x - s.x_low, periodic_sides),
        p=jnp.where(restart, 0, s.p),
        rz_check=jnp.where(restart, jnp.inf, jnp.minimum(s.rz, s.rz_check)),
    )
    fluxes = plane_fluxes(system, s.x, s.x_low, d)
    mean = jnp.mean(fluxes)
    d_rel = mean * d.shape[0] / (d.shape[1] * d.shape[2])
    spread = (jnp.max(fluxes) - jnp.min(fluxes)) / jnp.abs(mean)
    return s._replace(
        iterations=s.iterations + check_every,
        d_rel=d_rel,
        spread=spread,
        change=jnp.abs(d_rel - s.d_rel) / jnp.abs(d_rel),
        spread_best=jnp.minimum(spread, s.spread_best),
        stall=jnp.where(spread < s.spread_best, 0, s.stall + 1),
    )


def solve(
    prepared: Prepared,
    rtol: jax.Array,
    sweeps: jax.Array,
    periodic_sides: bool,
    max_iter: int,
    return_field: bool,
    preconditioner: str,
):
    """Preconditioned CG on a `Prepared` system -> (d_rel, iterations, converged, c | None, flux | None).

    sweeps: traced int32 smoothing sweeps per multigrid level (see `v_cycle`).
    c: (L, H, W) concentration; flux: (3, L, H, W) g (c[i+1] - c[i]) through the face towards +1 along each axis.
    """
    system = prepared.system
    precondition = _preconditioner(prepared, preconditioner, sweeps, periodic_sides)
    check_every = CHECK_EVERY[preconditioner]

    def body(s: _State) -> _State:
        s = jax.lax.fori_loop(0, check_every, lambda _, s: _cg_step(s, system, precondition, periodic_sides), s)
        return _check(s, system, prepared.d, periodic_sides, check_every)

    spans = jnp.any(prepared.active)

    def running(s: _State) -> jax.Array:
        # no `lax.cond` on `spans`: under vmap it would batch every closed-over value, including the
        # multigrid trip count `sweeps`, and make each inner loop a masked batched loop (3x slower)
        return spans & (s.iterations < max_iter) & (s.stall < _STALL_CHECKS) & ~((s.spread < rtol) & (s.change < rtol))

    s = jax.lax.while_loop(running, body, _initial_state(prepared, precondition, periodic_sides))
    converged = ~spans | ((s.spread < rtol) & (s.change < rtol))
    conc = flux = None
    if return_field:
        conc = s.x - s.x_low
        flux = jnp.stack([system.g[k] * (shift(conc, k, 1, periodic_sides and k > 0) - conc) for k in range(3)])
    return s.d_rel, s.iterations, converged, conc, flux


@functools.partial(jax.jit, static_argnames=("periodic_sides", "preconditioner"))
def _prepare_batch(batch: jax.Array, periodic_sides: bool, preconditioner: str) -> Prepared:
    return jax.vmap(lambda d: prepare(d, periodic_sides, preconditioner))(batch)


@functools.partial(jax.jit, static_argnames=("periodic_sides", "max_iter", "return_field", "preconditioner"))
def _solve_prepared_batch(prepared: Prepared, rtol: jax.Array, sweeps: jax.Array, **options):
    """`solve` mapped over the batch axis of `prepared`; options: solve's static keyword arguments."""
    return jax.vmap(lambda p: solve(p, rtol, sweeps, **options))(prepared)


def solve_batch(
    batch: jax.Array, rtol: jax.Array, periodic_sides: bool, max_iter: int, return_field: bool, preconditioner: str
):
    """`prepare` + `solve` mapped over a leading batch axis (the loop runs until every volume converged).

    Two jitted calls, the arrays staying on the device: when the set-up is compiled into the same program,
    XLA fuses parts of it into the CG loop and each iteration costs 3-4x more (measured on CPU).
    """
    prepared = _prepare_batch(batch, periodic_sides=periodic_sides, preconditioner=preconditioner)
    return _solve_prepared_batch(
        prepared,
        rtol,
        jnp.asarray(SMOOTHING_SWEEPS, jnp.int32),
        periodic_sides=periodic_sides,
        max_iter=max_iter,
        return_field=return_field,
        preconditioner=preconditioner,
    )
