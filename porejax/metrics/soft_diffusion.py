"""Differentiable effective diffusivity, D_rel and tortuosity of a phase from its probabilities.

The diffusivity field of phase i is its probability p_i itself (D = p_i, D0 = 1). Why p_i and not a
sharpened p_i: on one-hot p it is the binary field of the exact solver, so the value equals
`porejax.metrics.tortuosity` within the solver's tolerance; it is smooth in p everywhere (a sharpening
such as p_i^k or a steep sigmoid flattens the gradient where most generated voxels sit, at p near 0 or 1);
and a generator's probabilities are nearly one-hot already, so the soft and hard values stay close (the
design loop corrects the remaining gap with the hard value, see porejax.design).

Discretisation, boundaries and solver are those of porejax.metrics.diffusion (imported, not copied):
harmonic-mean face conductances, c = 0 / 1 half a voxel outside the first / last layer along the transport
axis, mirror or periodic side faces, voxels off the spanning cluster removed, multigrid-preconditioned
conjugate gradients in `lax.while_loop`.

Gradient by implicit differentiation (the adjoint method), never by unrolling the iterations. The solve
gives c* with A(D) c* = b(D), A symmetric positive definite on the active voxels. The dissipation
E(c; D) = c^T A c - 2 b^T c + e(D) (the sum over faces of g (c_a - c_b)^2 plus the Dirichlet faces'
2 D c^2 and 2 D (1 - c)^2; A c = b is its stationarity condition) gives the total flux through the volume
as I(D) = E(c*; D) = e(D) - b(D)^T c*, linear in c*. Its adjoint equation A^T lam = dI/dc = -b has, A
being symmetric, the solution lam = -c*: the adjoint field is the forward field, and the adjoint solve
through the preconditioned solver is the forward solve already done. The adjoint gradient is then
dI/dD = de/dD - (db/dD)^T c* + lam^T (db/dD - (dA/dD) c*) = de/dD - 2 (db/dD)^T c* + c*^T (dA/dD) c*,
which is dE/dD at fixed c = c*: the backward pass evaluates it as the gradient of E in D with the stored
c* (one field; no solve, no loop, so its memory does not depend on the iteration count), with the set of
voxels on the spanning cluster held fixed (it changes only where a voxel crosses FLOOR).

D_rel = I L / A (L layers, A = H W voxels), tau = phi / D_rel with phi = mean p_i (the soft volume
fraction; the exact solver's phi on one-hot p).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from porejax.errors import PorejaxError
from porejax.metrics._common import check_axis
from porejax.metrics.conjugate_gradient import prepare, solve
from porejax.metrics.diffusion import SIDE_BOUNDARIES
from porejax.metrics.multigrid import SMOOTHING_SWEEPS
from porejax.metrics.stencil import build_system, shift

FLOOR = 1e-6  # diffusivities below this are non-conducting (see `relative_diffusivity_of_field`)


def _dissipation(d: jax.Array, c: jax.Array, periodic_sides: bool) -> jax.Array:
    """E(c; d) for d, c (L, H, W), transport along axis 0: equals the total flux I at the solution c*."""
    system = build_system(d, periodic_sides)
    energy = jnp.sum(2 * d[0] * c[0] ** 2) + jnp.sum(2 * d[-1] * (1 - c[-1]) ** 2)
    for k in range(3):
        energy = energy + jnp.sum(system.g[k] * (shift(c, k, 1, periodic_sides and k > 0) - c) ** 2)
    return energy


def _forward(d: jax.Array, periodic_sides: bool, rtol: float, max_iter: int):
    prepared = prepare(d, periodic_sides, "multigrid")
    d_rel, _, _, c, _ = solve(
        prepared,
        jnp.asarray(rtol, d.dtype),
        jnp.asarray(SMOOTHING_SWEEPS, jnp.int32),
        periodic_sides,
        max_iter,
        True,
        "multigrid",
    )
    return d_rel, (prepared.active, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _relative_diffusivity(d: jax.Array, periodic_sides: bool, rtol: float, max_iter: int) -> jax.Array:
    """D_rel of a diffusivity field d (L, H, W) >= 0 along axis 0 (a scalar)."""
    return _forward(d, periodic_sides, rtol, max_iter)[0]


def _relative_diffusivity_fwd(d, periodic_sides, rtol, max_iter):
    d_rel, (active, c) = _forward(d, periodic_sides, rtol, max_iter)
    return d_rel, (d, active, c)


def _relative_diffusivity_bwd(periodic_sides, rtol, max_iter, residuals, cotangent):
    d, active, c = residuals
    scale = d.shape[0] / (d.shape[1] * d.shape[2])
    grad = jax.grad(lambda field: _dissipation(jnp.where(active, field, 0), c, periodic_sides))(d)
    return (cotangent * scale * grad,)


_relative_diffusivity.defvjp(_relative_diffusivity_fwd, _relative_diffusivity_bwd)


def relative_diffusivity_of_field(
    diffusivity: jax.Array, axis: int = 0, side_boundary: str = "mirror", rtol: float = 1e-3, max_iter: int = 2000
) -> jax.Array:
    """D_eff / D0 of a diffusivity field (D, H, W) or (B, D, H, W) >= 0 along array axis `axis`.

    Differentiable in the field (see the module docstring); runs under jit and vmap. rtol, max_iter: as
    `porejax.metrics.tortuosity` (an unconverged solve returns its last iterate). Returns () or (B,).
    Values below FLOOR count as 0: a generator's softmax leaves many voxels at 1e-38..1e-10, where the
    float32 harmonic-mean derivative 2 b^2 / (a + b)^2 underflows to 0 / 0; their conductance is
    negligible, and binary fields are unchanged.
    """
    axis = check_axis(axis)
    if side_boundary not in SIDE_BOUNDARIES:
        raise PorejaxError(f"side_boundary must be one of {SIDE_BOUNDARIES}, got {side_boundary!r}")
    if diffusivity.ndim not in (3, 4):
        raise PorejaxError(f"diffusivity has shape {diffusivity.shape}, expected (D, H, W) or (B, D, H, W)")
    solve = functools.partial(
        _relative_diffusivity, periodic_sides=side_boundary == "periodic", rtol=float(rtol), max_iter=int(max_iter)
    )
    frame = jnp.moveaxis(jnp.where(diffusivity >= FLOOR, diffusivity, 0), axis - 3, -3)  # transport axis first
    if frame.ndim == 3:
        return solve(frame)
    return jax.vmap(solve)(frame)


def _phase_field(p: jax.Array, phase: int) -> jax.Array:
    if p.ndim not in (4, 5) or not 0 <= int(phase) < p.shape[-1]:
        raise PorejaxError(
            f"need probabilities (D, H, W, P) or (B, D, H, W, P) and a phase index in "
            f"0..P-1; got shape {p.shape} and phase {phase!r}"
        )
    return p[..., int(phase)]


def soft_relative_diffusivity(
    p: jax.Array, phase: int, axis: int = 0, side_boundary: str = "mirror", rtol: float = 1e-3, max_iter: int = 2000
) -> jax.Array:
    """D_rel of phase index `phase` along `axis` on the field D = p[..., phase]: (D, H, W, P) -> (), batched (B,)."""
    return relative_diffusivity_of_field(_phase_field(p, phase), axis, side_boundary, rtol, max_iter)


def soft_tortuosity(
    p: jax.Array, phase: int, axis: int = 0, side_boundary: str = "mirror", rtol: float = 1e-3, max_iter: int = 2000
) -> jax.Array:
    """Tortuosity factor phi / D_rel (phi = mean p[..., phase]); inf where no path spans the volume."""
    d_rel = soft_relative_diffusivity(p, phase, axis, side_boundary, rtol, max_iter)
    phi = jnp.mean(_phase_field(p, phase), axis=(-3, -2, -1))
    return jnp.where(d_rel > 0, phi / jnp.where(d_rel > 0, d_rel, 1), jnp.inf)
