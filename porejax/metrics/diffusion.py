"""Steady-state diffusion through a voxel phase: tortuosity factor and effective diffusivity.

Physics (matches TauFactor 1.2.1): div(D grad c) = 0 on the conducting voxels, finite volumes on the voxel
grid. The face conductance between neighbours i, j is the harmonic mean 2 D_i D_j / (D_i + D_j) (= 1
inside a binary phase, 0 to a non-conducting voxel). c = 0 and c = 1 are held on the outer faces of the
first and last layers along the transport axis, half a voxel from the voxel centres (conductance 2 D_i).
The four side faces are zero-flux ("mirror") or periodic. Lengths are in voxels, so with mean flux I
through a plane of A = H * W voxels over L layers, D_eff / D0 = I * L / A and tau = phi * D0 / D_eff, with
phi the phase's total volume fraction (as TauFactor).

Solver: voxels not connected to both Dirichlet faces are removed first (found by a jitted flood fill
in `lax.while_loop`); a phase without a spanning path gives tau = inf, D_rel = 0 at once.
The remaining symmetric positive definite system is solved matrix-free by Jacobi-preconditioned
conjugate gradients inside `lax.while_loop`; float32 by default, with a compensated (Kahan) update of the
solution so that float32 does not stall above the tolerance. Convergence: every 10 iterations the plane
fluxes (inlet face, every interface between layers, outlet face) must agree within `rtol` (relative
spread, as TauFactor) and tau must have changed by less than `rtol` since the last check.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_mask_batch, check_axis

SIDE_BOUNDARIES = ("mirror", "periodic")
_CHECK_EVERY = 10


class TortuosityResult(NamedTuple):
    """Result of `tortuosity`; for a batch every field has a leading batch axis (B,).

    tau: tortuosity factor (inf without a spanning path). relative_diffusivity: D_eff / D0 = phi / tau.
    effective_diffusivity: D_eff in units of D0 (= relative_diffusivity for D0 = 1). iterations: CG
    iterations used. converged: reached `rtol`. With `return_field=True`: concentration (D, H, W), c in
    [0, 1] (0 outside the spanning cluster; c = 0 face before index 0 and c = 1 face after the last index
    along the transport axis), and flux (3, D, H, W): flux[k] = conductance * (c[i+1] - c[i]) through the
    face between voxel i and its +1 neighbour along array axis k (so positive along the transport axis).
    """

    tau: np.ndarray
    relative_diffusivity: np.ndarray
    effective_diffusivity: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    concentration: np.ndarray | None = None
    flux: np.ndarray | None = None


def _shift(x: jax.Array, axis: int, step: int, periodic: bool) -> jax.Array:
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


def _spanning_cluster(mask: jax.Array, periodic_sides: bool) -> jax.Array:
    """Voxels of `mask` (L, H, W) 6-connected to both faces of axis 0: jitted flood fill from each face.

    One dilation step per loop iteration (unrolling several lets XLA fuse them into a far slower kernel).
    """
    masks = jnp.stack([mask, mask])
    seeds = jnp.zeros_like(masks).at[0, 0].set(mask[0]).at[1, -1].set(mask[-1])

    def body(state):
        filled, _ = state
        grown = filled
        for axis in (1, 2, 3):
            per = periodic_sides and axis > 1
            grown = grown | _shift(filled, axis, 1, per) | _shift(filled, axis, -1, per)
        grown = grown & masks
        return grown, jnp.any(grown != filled)

    filled, _ = jax.lax.while_loop(lambda s: s[1], body, (seeds, jnp.array(True)))
    return filled[0] & filled[1]


def _harmonic(a: jax.Array, b: jax.Array) -> jax.Array:
    total = a + b
    return jnp.where(total > 0, 2 * a * b / jnp.where(total > 0, total, 1), 0)


class _System(NamedTuple):
    """Face conductances towards +1 along each axis (zero at open edges), diagonal, right-hand side."""

    g: tuple[jax.Array, jax.Array, jax.Array]
    diag: jax.Array
    rhs: jax.Array


def _build_system(d: jax.Array, periodic_sides: bool) -> _System:
    g = tuple(_harmonic(d, _shift(d, axis, 1, periodic_sides and axis > 0)) for axis in range(3))
    boundary = jnp.zeros_like(d).at[0].add(2 * d[0]).at[-1].add(2 * d[-1])
    diag = boundary
    for axis in range(3):
        diag = diag + g[axis] + _shift(g[axis], axis, -1, periodic_sides and axis > 0)
    rhs = jnp.zeros_like(d).at[-1].set(2 * d[-1])
    return _System(g, diag, rhs)


def _apply(system: _System, x: jax.Array, periodic_sides: bool) -> jax.Array:
    """A x for the SPD system matrix A (x must be zero outside the conducting cluster)."""
    out = system.diag * x
    for axis in range(3):
        per = periodic_sides and axis > 0
        g = system.g[axis]
        out = out - g * _shift(x, axis, 1, per) - _shift(g * x, axis, -1, per)
    return out


def _plane_fluxes(system: _System, x: jax.Array, x_low: jax.Array, d: jax.Array) -> jax.Array:
    """Total flux towards -axis 0 through the inlet face, each interface and the outlet face: (L + 1,).

    The concentration is x - x_low (compensated sum); differences are taken before adding the parts.
    """
    inlet = jnp.sum(2 * d[0] * (x[0] - x_low[0]))[None]
    inner = jnp.sum(system.g[0][:-1] * ((x[1:] - x[:-1]) - (x_low[1:] - x_low[:-1])), axis=(1, 2))
    outlet = jnp.sum(2 * d[-1] * ((1 - x[-1]) + x_low[-1]))[None]
    return jnp.concatenate([inlet, inner, outlet])


class _State(NamedTuple):
    x: jax.Array
    x_low: jax.Array  # compensated (Kahan) low part of x: float32 x alone stagnates at its rounding error
    r: jax.Array
    p: jax.Array
    rz: jax.Array
    iterations: jax.Array
    d_rel: jax.Array
    spread: jax.Array
    change: jax.Array


def _solve(d: jax.Array, rtol: jax.Array, periodic_sides: bool, max_iter: int, return_field: bool):
    """diffusivity (L, H, W) >= 0, transport along axis 0 -> (d_rel, iterations, converged, c | None, flux | None).

    c: (L, H, W) concentration; flux: (3, L, H, W) g (c[i+1] - c[i]) through the face towards +1 along each axis.
    """
    active = _spanning_cluster(d > 0, periodic_sides)
    d = jnp.where(active, d, 0)
    system = _build_system(d, periodic_sides)
    inv_diag = jnp.where(active, 1 / jnp.where(active, system.diag, 1), 0)
    length, area = d.shape[0], d.shape[1] * d.shape[2]
    ramp = (jnp.arange(length, dtype=d.dtype) + 0.5) / length
    x0 = jnp.where(active, ramp[:, None, None], 0)
    r0 = system.rhs - _apply(system, x0, periodic_sides)
    z0 = inv_diag * r0
    inf = jnp.asarray(jnp.inf, d.dtype)
    state0 = _State(x0, jnp.zeros_like(x0), r0, z0, jnp.vdot(r0, z0), jnp.asarray(0), jnp.asarray(0, d.dtype), inf, inf)

    def cg_step(_, s: _State) -> _State:
        ap = _apply(system, s.p, periodic_sides)
        pap = jnp.vdot(s.p, ap)
        alpha = jnp.where(pap > 0, s.rz / jnp.where(pap > 0, pap, 1), 0)
        step = alpha * s.p - s.x_low
        x = s.x + step
        x_low = (x - s.x) - step
        r = s.r - alpha * ap
        z = inv_diag * r
        rz = jnp.vdot(r, z)
        beta = jnp.where(s.rz > 0, rz / jnp.where(s.rz > 0, s.rz, 1), 0)
        return s._replace(x=x, x_low=x_low, r=r, p=z + beta * s.p, rz=rz)

    def body(s: _State) -> _State:
        s = jax.lax.fori_loop(0, _CHECK_EVERY, cg_step, s)
        fluxes = _plane_fluxes(system, s.x, s.x_low, d)
        mean = jnp.mean(fluxes)
        d_rel = mean * length / area
        spread = (jnp.max(fluxes) - jnp.min(fluxes)) / jnp.abs(mean)
        change = jnp.abs(d_rel - s.d_rel) / jnp.abs(d_rel)
        return s._replace(iterations=s.iterations + _CHECK_EVERY, d_rel=d_rel, spread=spread, change=change)

    spans = jnp.any(active)

    def running(s: _State) -> jax.Array:
        # `spans` is checked here too: under vmap the cond below becomes a select that runs the loop
        return spans & (s.iterations < max_iter) & ~((s.spread < rtol) & (s.change < rtol))

    s = jax.lax.cond(spans, lambda: jax.lax.while_loop(running, body, state0), lambda: state0)
    converged = ~spans | ((s.spread < rtol) & (s.change < rtol))
    conc = flux = None
    if return_field:
        conc = s.x - s.x_low
        flux = jnp.stack([system.g[k] * (_shift(conc, k, 1, periodic_sides and k > 0) - conc) for k in range(3)])
    return s.d_rel, s.iterations, converged, conc, flux


@functools.partial(jax.jit, static_argnames=("periodic_sides", "max_iter", "return_field"))
def _solve_batch(batch: jax.Array, rtol: jax.Array, periodic_sides: bool, max_iter: int, return_field: bool):
    """`_solve` mapped over a leading batch axis (the loop runs until every volume has converged)."""
    return jax.vmap(lambda d: _solve(d, rtol, periodic_sides, max_iter, return_field))(batch)


def effective_diffusivity(diffusivity, axis: int = 0, side_boundary: str = "mirror", rtol: float = 1e-3,
                          max_iter: int = 20000, return_field: bool = False, dtype=jnp.float32,
                          volume_fraction=None) -> TortuosityResult:
    """Solve steady diffusion through a diffusivity field D >= 0 (voxel units, D0 = 1) along `axis`.

    diffusivity: (D, H, W) or (B, D, H, W), finite and non-negative (0 = non-conducting).
    volume_fraction: phi used for tau = phi / D_rel (default: the fraction of voxels with D > 0).
    See `tortuosity` for the other arguments and the result.
    """
    field = np.asarray(diffusivity)
    if field.ndim not in (3, 4) or field.size == 0:
        raise PorejaxError(f"diffusivity has shape {field.shape}, expected a non-empty (D, H, W) or (B, D, H, W)")
    if not np.all(np.isfinite(field)) or np.any(field < 0):
        raise PorejaxError("diffusivity must be finite and non-negative everywhere: clip or fix the field")
    return _run(field if field.ndim == 4 else field[None], field.ndim == 4, axis, side_boundary, rtol,
                max_iter, return_field, dtype, volume_fraction)


def tortuosity(mask, axis: int = 0, side_boundary: str = "mirror", rtol: float = 1e-3, max_iter: int = 20000,
               return_field: bool = False, dtype=jnp.float32) -> TortuosityResult:
    """Tortuosity factor of a binary phase along array axis `axis` (0, 1, 2 = x, y, z).

    mask: (D, H, W) or (B, D, H, W), 0/1 or bool, True = conducting phase. side_boundary: "mirror"
    (zero flux, TauFactor `Solver`) or "periodic" (TauFactor `PeriodicSolver`) on the four side faces.
    rtol: relative tolerance on the plane-flux spread and on the change of tau between checks.
    max_iter: CG iteration limit (the result then has converged=False). dtype: jnp.float32 or jnp.float64.
    A batch is solved by `jax.vmap` of the jitted solver (the loop runs until every volume converged).

    Returns a TortuosityResult of Python floats/ints/bools for one volume, numpy (B,) arrays for a batch;
    tau = inf and relative_diffusivity = 0 when no path spans the volume along `axis`.
    """
    batch, batched = as_mask_batch(mask, "mask")
    return _run(batch, batched, axis, side_boundary, rtol, max_iter, return_field, dtype, None)


def _run(batch: np.ndarray, batched: bool, axis: int, side_boundary: str, rtol: float, max_iter: int,
         return_field: bool, dtype, volume_fraction) -> TortuosityResult:
    axis = check_axis(axis)
    if side_boundary not in SIDE_BOUNDARIES:
        raise PorejaxError(f"side_boundary must be one of {SIDE_BOUNDARIES}, got {side_boundary!r}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise PorejaxError(f"rtol must be a number between 0 and 1, got {rtol!r}")
    if int(max_iter) < 1:
        raise PorejaxError(f"max_iter must be a positive number of iterations, got {max_iter!r}")
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise PorejaxError(f"dtype must be float32 or float64, got {dtype}")
    phi = (np.count_nonzero(batch > 0, axis=(1, 2, 3)) / np.prod(batch.shape[1:]) if volume_fraction is None
           else np.broadcast_to(np.asarray(volume_fraction, np.float64), batch.shape[:1]))
    with jax.enable_x64(dtype == jnp.float64):
        d_rel, iterations, converged, conc, flux = jax.device_get(_solve_batch(
            jnp.asarray(np.moveaxis(batch, axis + 1, 1), dtype), jnp.asarray(rtol, dtype),
            periodic_sides=side_boundary == "periodic", max_iter=int(max_iter), return_field=return_field))
    if return_field:  # back from the transport frame (transport axis first) to array axes
        frame = [axis] + [a for a in range(3) if a != axis]  # frame axis k is array axis frame[k]
        conc = np.moveaxis(conc, 1, axis + 1)
        flux = np.moveaxis(flux[:, [frame.index(a) for a in range(3)]], 2, axis + 2)
    d_rel = np.maximum(np.asarray(d_rel, np.float64), 0.0)
    with np.errstate(divide="ignore"):
        tau = np.where(d_rel > 0, phi / np.where(d_rel > 0, d_rel, 1), np.inf)
    fields = (tau, d_rel, d_rel, np.asarray(iterations), np.asarray(converged))
    if batched:
        return TortuosityResult(*fields, conc, flux)
    return TortuosityResult(float(tau[0]), float(d_rel[0]), float(d_rel[0]), int(fields[3][0]),
                            bool(fields[4][0]), None if conc is None else conc[0],
                            None if flux is None else flux[0])
