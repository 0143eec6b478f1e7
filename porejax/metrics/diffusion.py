"""Steady-state diffusion through a voxel phase: tortuosity factor and relative (effective) diffusivity.

Physics (matches TauFactor 1.2.1): div(D grad c) = 0 on the conducting voxels, finite volumes on the voxel
grid. The face conductance between neighbours i, j is the harmonic mean 2 D_i D_j / (D_i + D_j) (= 1
inside a binary phase, 0 to a non-conducting voxel). c = 0 and c = 1 are held on the outer faces of the
first and last layers along the transport axis, half a voxel from the voxel centres (conductance 2 D_i).
The four side faces are zero-flux ("mirror") or periodic. Lengths are in voxels, so with mean flux I
through a plane of A = H * W voxels over L layers, D_eff / D0 = I * L / A and tau = phi * D0 / D_eff, with
phi the phase's total volume fraction (as TauFactor).

Solver: voxels not connected to both Dirichlet faces are removed first (jitted flood fill on a bit-packed
mask, 32 voxels per uint32 word); a phase without a spanning path gives tau = inf, D_rel = 0 at once.
The remaining symmetric positive definite system is solved matrix-free by preconditioned conjugate
gradients inside `lax.while_loop`. Default preconditioner: one symmetric multigrid V-cycle (2x2x2
aggregation, Galerkin coarse operators computed once before the loop, damped-Jacobi smoothing, scaled
coarse-grid correction, dense inverse on the coarsest grid), which cuts the iterations 10-30x against
plain Jacobi preconditioning at ~4 matrix-vector products per V-cycle. float32 by default, with a
compensated (Kahan) update of the solution so that float32 does not stall above the tolerance, and
residual replacement plus restarts so that it does not blow up at rounding level either. Convergence:
every few iterations the plane fluxes (inlet face, every interface between layers, outlet face) must
agree within `rtol` (relative spread, as TauFactor) and tau must have changed by less than `rtol` since
the last check; a spread that stalls above `rtol` (a tolerance below float32 rounding for that volume)
stops the solve early with converged=False.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_batch, as_mask_batch, check_axis, single_or_batch

SIDE_BOUNDARIES = ("mirror", "periodic")
PRECONDITIONERS = ("multigrid", "jacobi")
_CHECK_EVERY = {"multigrid": 2, "jacobi": 10}  # CG iterations between convergence checks
_SMOOTHING_WEIGHT = 0.9  # damped Jacobi; < 1 keeps the smoother, hence the V-cycle, positive definite
_SMOOTHING_SWEEPS = 1  # per level, before and after the coarse-grid correction
_COARSE_WEIGHT = 1.5  # scales the coarse-grid correction; in (0, 2) keeps the V-cycle positive definite
_COARSEST_SIZE = 256  # unknowns at most on the coarsest grid (dense inverse)
_RESTART_GROWTH = 10.0  # restart CG when rz exceeds this multiple of its lowest check (rounding level)
_STALL_CHECKS = 50  # stop (converged=False) after this many checks without a new lowest flux spread
_WORD_BITS = 32


class TortuosityResult(NamedTuple):
    """Result of `tortuosity` / `effective_diffusivity` along one axis. Every field leads with the batch
    axis (B,) for a batch; for one volume that axis is dropped (numpy scalars, fields (D, H, W) and (3, D, H, W)).

    tau: tortuosity factor phi / D_rel (dimensionless; inf without a spanning path). relative_diffusivity:
    D_rel = D_eff / D0 (dimensionless; 0 without a spanning path). iterations: CG iterations used.
    converged: reached `rtol`. With `return_field=True`: concentration (B, D, H, W), c in [0, 1] (0 outside
    the spanning cluster; c = 0 face before index 0 and c = 1 face after the last index along the transport
    axis), and flux (B, 3, D, H, W): flux[:, k] = conductance * (c[i+1] - c[i]) through the face between voxel
    i and its +1 neighbour along array axis k (so positive along the transport axis); None otherwise.
    """

    tau: np.ndarray
    relative_diffusivity: np.ndarray
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


def _pack_bits(mask: jax.Array) -> jax.Array:
    """(..., W) bool -> (..., ceil(W / 32)) uint32: bit b of word j is mask[..., 32 j + b] (zero-padded)."""
    width, words = mask.shape[-1], -(-mask.shape[-1] // _WORD_BITS)
    bits = jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, words * _WORD_BITS - width)]).astype(jnp.uint32)
    bits = bits.reshape(*mask.shape[:-1], words, _WORD_BITS) << jnp.arange(_WORD_BITS, dtype=jnp.uint32)
    return bits.sum(axis=-1, dtype=jnp.uint32)  # distinct bits: the sum is their bitwise or


def _unpack_bits(words: jax.Array, width: int) -> jax.Array:
    """Inverse of `_pack_bits`: (..., ceil(W / 32)) uint32 -> (..., W) bool."""
    bits = (words[..., None] >> jnp.arange(_WORD_BITS, dtype=jnp.uint32)) & 1
    return bits.reshape(*words.shape[:-1], -1)[..., :width].astype(bool)


def _spanning_cluster(mask: jax.Array, periodic_sides: bool) -> jax.Array:
    """Voxels of `mask` (L, H, W) 6-connected to both faces of axis 0: jitted flood fill from each face.

    The mask is bit-packed along W (32 voxels per word), so one dilation step costs ~1/32 of a pass over
    the voxels: along W it is a bit shift with carries between neighbouring words. One dilation step per
    loop iteration (unrolling several lets XLA fuse them into a far slower kernel).
    """
    width = mask.shape[-1]
    packed = _pack_bits(mask)
    masks = jnp.stack([packed, packed])
    seeds = jnp.zeros_like(masks).at[0, 0].set(packed[0]).at[1, -1].set(packed[-1])
    top_word, top_bit = divmod(width - 1, _WORD_BITS)  # where voxel W - 1 lives
    word = jnp.arange(masks.shape[-1])
    high = _WORD_BITS - 1

    def body(state):
        filled, _ = state
        grown = filled | (filled << 1) | (filled >> 1)  # along W inside each word
        grown = grown | (_shift(filled, 3, -1, False) >> high) | (_shift(filled, 3, 1, False) << high)
        for axis in (1, 2):
            per = periodic_sides and axis == 2
            grown = grown | _shift(filled, axis, 1, per) | _shift(filled, axis, -1, per)
        if periodic_sides:  # along W across the wrap: voxel W - 1 <-> voxel 0
            last, first = (filled[..., top_word] >> top_bit) & 1, filled[..., 0] & 1
            grown = grown | jnp.where(word == 0, last[..., None], 0)
            grown = grown | jnp.where(word == top_word, (first << top_bit)[..., None], 0)
        grown = grown & masks
        return grown, jnp.any(grown != filled)

    filled, _ = jax.lax.while_loop(lambda s: s[1], body, (seeds, jnp.array(True)))
    return _unpack_bits(filled[0] & filled[1], width)


def _harmonic(a: jax.Array, b: jax.Array) -> jax.Array:
    total = a + b
    return jnp.where(total > 0, 2 * a * b / jnp.where(total > 0, total, 1), 0)


class _System(NamedTuple):
    """Face conductances towards +1 (g) and -1 (g_down) along each axis (zero at open edges), diagonal,
    right-hand side. g_down[k] = g[k] shifted by one voxel: stored so that A x only shifts x."""

    g: tuple[jax.Array, jax.Array, jax.Array]
    g_down: tuple[jax.Array, jax.Array, jax.Array]
    diag: jax.Array
    rhs: jax.Array


def _with_g(g: tuple[jax.Array, ...], diag: jax.Array, rhs: jax.Array, periodic_sides: bool) -> _System:
    g_down = tuple(_shift(g[k], k, -1, periodic_sides and k > 0) for k in range(3))
    return _System(tuple(g), g_down, diag, rhs)


def _build_system(d: jax.Array, periodic_sides: bool) -> _System:
    g = tuple(_harmonic(d, _shift(d, axis, 1, periodic_sides and axis > 0)) for axis in range(3))
    boundary = jnp.zeros_like(d).at[0].add(2 * d[0]).at[-1].add(2 * d[-1])
    diag = boundary
    for axis in range(3):
        diag = diag + g[axis] + _shift(g[axis], axis, -1, periodic_sides and axis > 0)
    rhs = jnp.zeros_like(d).at[-1].set(2 * d[-1])
    return _with_g(g, diag, rhs, periodic_sides)


def _apply(system: _System, x: jax.Array, periodic_sides: bool) -> jax.Array:
    """A x for the SPD system matrix A (x must be zero outside the conducting cluster)."""
    out = system.diag * x
    for axis in range(3):
        per = periodic_sides and axis > 0
        out = out - system.g[axis] * _shift(x, axis, 1, per) - system.g_down[axis] * _shift(x, axis, -1, per)
    return out


def _plane_fluxes(system: _System, x: jax.Array, x_low: jax.Array, d: jax.Array) -> jax.Array:
    """Total flux towards -axis 0 through the inlet face, each interface and the outlet face: (L + 1,).

    The concentration is x - x_low (compensated sum); differences are taken before adding the parts.
    """
    inlet = jnp.sum(2 * d[0] * (x[0] - x_low[0]))[None]
    inner = jnp.sum(system.g[0][:-1] * ((x[1:] - x[:-1]) - (x_low[1:] - x_low[:-1])), axis=(1, 2))
    outlet = jnp.sum(2 * d[-1] * ((1 - x[-1]) + x_low[-1]))[None]
    return jnp.concatenate([inlet, inner, outlet])


class _Level(NamedTuple):
    """One multigrid level: its system and the damped-Jacobi weights _SMOOTHING_WEIGHT / diag (0 off the cluster)."""

    system: _System
    weight: jax.Array


class _Multigrid(NamedTuple):
    """Levels from fine to coarse (2x2x2 aggregation, Galerkin operators) and the coarsest inverse."""

    levels: tuple[_Level, ...]
    coarse_inverse: jax.Array  # (n, n) dense inverse on the coarsest grid, n = its voxel count


def _pairs(x: jax.Array) -> jax.Array:
    """(a, b, c) -> (ceil(a/2), 2, ceil(b/2), 2, ceil(c/2), 2): zero-pad to even sizes and split pairs."""
    x = jnp.pad(x, [(0, n % 2) for n in x.shape])
    return x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2, x.shape[2] // 2, 2)


def _restrict(x: jax.Array) -> jax.Array:
    """P^T x for piecewise-constant prolongation P: sums over 2x2x2 aggregates (as 8 strided slices, far
    faster on XLA CPU than a reduction)."""
    x = jnp.pad(x, [(0, n % 2) for n in x.shape])
    return sum(x[a::2, b::2, c::2] for a in (0, 1) for b in (0, 1) for c in (0, 1))


def _prolong(xc: jax.Array, shape: tuple[int, int, int]) -> jax.Array:
    """P xc: each coarse value copied to the voxels of its aggregate."""
    x = jnp.broadcast_to(xc[:, None, :, None, :, None], (xc.shape[0], 2, xc.shape[1], 2, xc.shape[2], 2))
    x = x.reshape(2 * xc.shape[0], 2 * xc.shape[1], 2 * xc.shape[2])
    return x[: shape[0], : shape[1], : shape[2]]


def _coarsen(system: _System, periodic_sides: bool) -> _System:
    """Galerkin operator P^T A P of 2x2x2 aggregation: again a 7-point conductance stencil.

    The coarse conductance between neighbouring aggregates sums the fine faces between them (including the
    periodic wrap face, which joins a lone last layer of an odd size to aggregate 0); the coarse diagonal
    sums the fine diagonal minus twice the faces inside each aggregate.
    """
    diag = _restrict(system.diag)
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
    return _with_g(coarse_g, diag, jnp.zeros_like(diag), periodic_sides)


def _dense(system: _System, periodic_sides: bool) -> jax.Array:
    """The system matrix as a dense (n, n) array, with 1 on the diagonal of unknowns off the cluster."""
    shape = system.diag.shape
    n = system.diag.size
    basis = jnp.eye(n, dtype=system.diag.dtype).reshape(n, *shape)
    columns = jax.vmap(lambda e: _apply(system, e, periodic_sides).reshape(-1))(basis)
    return columns + jnp.diag((system.diag.reshape(-1) <= 0).astype(columns.dtype))


def _build_multigrid(system: _System, periodic_sides: bool) -> _Multigrid:
    """Coarsen by 2x2x2 aggregation until at most `_COARSEST_SIZE` unknowns remain (once, before CG)."""
    levels = []
    while system.diag.size > _COARSEST_SIZE:
        active = system.diag > 0
        levels.append(_Level(system, jnp.where(active, _SMOOTHING_WEIGHT / jnp.where(active, system.diag, 1), 0)))
        system = _coarsen(system, periodic_sides)
    inverse = jnp.linalg.inv(_dense(system, periodic_sides)) * (system.diag > 0).reshape(-1)
    return _Multigrid(tuple(levels), inverse)


def _v_cycle(mg: _Multigrid, r: jax.Array, periodic_sides: bool, sweeps: jax.Array, level: int = 0) -> jax.Array:
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
        return x + lv.weight * (r - _apply(lv.system, x, periodic_sides))

    def pre_sweep(_, x_and_residual: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x, residual = x_and_residual  # the residual leaves the loop materialised, ready for the restriction
        x = x + lv.weight * residual
        return x, r - _apply(lv.system, x, periodic_sides)

    x, residual = jax.lax.fori_loop(0, sweeps, pre_sweep, (jnp.zeros_like(r), r))
    x = x + _COARSE_WEIGHT * _prolong(_v_cycle(mg, _restrict(residual), periodic_sides, sweeps, level + 1), r.shape)
    return jax.lax.fori_loop(0, sweeps, sweep, x)


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


class _Prepared(NamedTuple):
    """Everything the CG loop reads, computed by a separate jitted call (see `_solve_batch`)."""

    d: jax.Array  # diffusivity, zero off the spanning cluster
    active: jax.Array  # the spanning cluster
    system: _System
    preconditioner: _Multigrid | jax.Array  # multigrid levels, or the Jacobi inverse diagonal


def _prepare(d: jax.Array, periodic_sides: bool, preconditioner: str) -> _Prepared:
    """diffusivity (L, H, W) >= 0, transport along axis 0 -> spanning cluster, system, preconditioner."""
    active = _spanning_cluster(d > 0, periodic_sides)
    d = jnp.where(active, d, 0)
    system = _build_system(d, periodic_sides)
    if preconditioner == "multigrid":
        return _Prepared(d, active, system, _build_multigrid(system, periodic_sides))
    return _Prepared(d, active, system, jnp.where(active, 1 / jnp.where(active, system.diag, 1), 0))


def _solve(
    prepared: _Prepared,
    rtol: jax.Array,
    sweeps: jax.Array,
    periodic_sides: bool,
    max_iter: int,
    return_field: bool,
    preconditioner: str,
):
    """Preconditioned CG on a `_Prepared` system -> (d_rel, iterations, converged, c | None, flux | None).

    sweeps: traced int32 smoothing sweeps per multigrid level (see `_v_cycle`).
    c: (L, H, W) concentration; flux: (3, L, H, W) g (c[i+1] - c[i]) through the face towards +1 along each axis.
    """
    d, active, system = prepared.d, prepared.active, prepared.system

    def precondition(r: jax.Array) -> jax.Array:
        if preconditioner == "multigrid":  # masked: prolongation also fills voxels off the cluster
            return jnp.where(active, _v_cycle(prepared.preconditioner, r, periodic_sides, sweeps), 0)
        return prepared.preconditioner * r

    check_every = _CHECK_EVERY[preconditioner]
    length, area = d.shape[0], d.shape[1] * d.shape[2]
    ramp = (jnp.arange(length, dtype=d.dtype) + 0.5) / length
    x0 = jnp.where(active, ramp[:, None, None], 0)
    r0 = system.rhs - _apply(system, x0, periodic_sides)
    z0 = precondition(r0)
    inf = jnp.asarray(jnp.inf, d.dtype)
    state0 = _State(
        x0,
        jnp.zeros_like(x0),
        r0,
        z0,
        jnp.vdot(r0, z0),
        inf,
        inf,
        jnp.asarray(0),
        jnp.asarray(0),
        jnp.asarray(0, d.dtype),
        inf,
        inf,
    )

    def cg_step(_, s: _State) -> _State:
        ap = _apply(system, s.p, periodic_sides)
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

    def body(s: _State) -> _State:
        s = jax.lax.fori_loop(0, check_every, cg_step, s)
        # float32 safeguards near rounding level, where the recursively updated residual drifts from
        # b - A x and CG lets it grow (then blow up) instead of stagnating: residual replacement at every
        # check, and a restart (p = 0; the next step sets p = z) when rz rose 10x above its lowest check
        restart = s.rz > _RESTART_GROWTH * s.rz_check
        s = s._replace(
            r=system.rhs - _apply(system, s.x - s.x_low, periodic_sides),
            p=jnp.where(restart, 0, s.p),
            rz_check=jnp.where(restart, jnp.inf, jnp.minimum(s.rz, s.rz_check)),
        )
        fluxes = _plane_fluxes(system, s.x, s.x_low, d)
        mean = jnp.mean(fluxes)
        d_rel = mean * length / area
        spread = (jnp.max(fluxes) - jnp.min(fluxes)) / jnp.abs(mean)
        change = jnp.abs(d_rel - s.d_rel) / jnp.abs(d_rel)
        # a spread that has made no new low for _STALL_CHECKS checks is at float rounding level: stop there
        # (converged=False) instead of iterating to max_iter
        best = jnp.minimum(spread, s.spread_best)
        return s._replace(
            iterations=s.iterations + check_every,
            d_rel=d_rel,
            spread=spread,
            change=change,
            spread_best=best,
            stall=jnp.where(spread < s.spread_best, 0, s.stall + 1),
        )

    spans = jnp.any(active)

    def running(s: _State) -> jax.Array:
        # no `lax.cond` on `spans`: under vmap it would batch every closed-over value, including the
        # multigrid trip count `sweeps`, and make each inner loop a masked batched loop (3x slower)
        return spans & (s.iterations < max_iter) & (s.stall < _STALL_CHECKS) & ~((s.spread < rtol) & (s.change < rtol))

    s = jax.lax.while_loop(running, body, state0)
    converged = ~spans | ((s.spread < rtol) & (s.change < rtol))
    conc = flux = None
    if return_field:
        conc = s.x - s.x_low
        flux = jnp.stack([system.g[k] * (_shift(conc, k, 1, periodic_sides and k > 0) - conc) for k in range(3)])
    return s.d_rel, s.iterations, converged, conc, flux


@functools.partial(jax.jit, static_argnames=("periodic_sides", "preconditioner"))
def _prepare_batch(batch: jax.Array, periodic_sides: bool, preconditioner: str) -> _Prepared:
    return jax.vmap(lambda d: _prepare(d, periodic_sides, preconditioner))(batch)


@functools.partial(jax.jit, static_argnames=("periodic_sides", "max_iter", "return_field", "preconditioner"))
def _solve_prepared_batch(
    prepared: _Prepared,
    rtol: jax.Array,
    sweeps: jax.Array,
    periodic_sides: bool,
    max_iter: int,
    return_field: bool,
    preconditioner: str,
):
    return jax.vmap(lambda p: _solve(p, rtol, sweeps, periodic_sides, max_iter, return_field, preconditioner))(prepared)


def _solve_batch(
    batch: jax.Array, rtol: jax.Array, periodic_sides: bool, max_iter: int, return_field: bool, preconditioner: str
):
    """`_prepare` + `_solve` mapped over a leading batch axis (the loop runs until every volume converged).

    Two jitted calls, the arrays staying on the device: when the set-up is compiled into the same program,
    XLA fuses parts of it into the CG loop and each iteration costs 3-4x more (measured on CPU).
    """
    prepared = _prepare_batch(batch, periodic_sides=periodic_sides, preconditioner=preconditioner)
    return _solve_prepared_batch(
        prepared,
        rtol,
        jnp.asarray(_SMOOTHING_SWEEPS, jnp.int32),
        periodic_sides=periodic_sides,
        max_iter=max_iter,
        return_field=return_field,
        preconditioner=preconditioner,
    )


def _domain_sharding(devices, shape: tuple[int, ...]) -> jax.sharding.Sharding:
    """Where a transport-frame batch (B, L, H, W) lives: split along H over the largest number of `devices`
    that divides H (None: the default device). Every later array of the solve follows by XLA's sharding
    propagation, which inserts the exchanges of neighbouring planes (halos) and the global sums."""
    if devices is None:
        return jax.sharding.SingleDeviceSharding(jax.devices()[0])
    devices = list(devices)
    n = max(k for k in range(1, len(devices) + 1) if shape[2] % k == 0)
    mesh = jax.sharding.Mesh(np.asarray(devices[:n]), ("domain",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, None, "domain"))


def effective_diffusivity(
    diffusivity,
    axis: int = 0,
    side_boundary: str = "mirror",
    rtol: float = 1e-3,
    max_iter: int = 20000,
    return_field: bool = False,
    dtype=jnp.float32,
    volume_fraction=None,
    preconditioner: str = "multigrid",
    devices=None,
) -> TortuosityResult:
    """Solve steady diffusion through a diffusivity field D >= 0 (voxel units, D0 = 1) along `axis`.

    diffusivity: (D, H, W) or (B, D, H, W), finite and non-negative (0 = non-conducting).
    volume_fraction: phi used for tau = phi / D_rel (default: the fraction of voxels with D > 0).
    See `tortuosity` for the other arguments and the result (relative_diffusivity is D_eff / D0, D0 = 1).
    """
    field = np.asarray(diffusivity)
    if field.ndim not in (3, 4) or field.size == 0:
        raise PorejaxError(f"diffusivity has shape {field.shape}, expected a non-empty (D, H, W) or (B, D, H, W)")
    if not np.all(np.isfinite(field)) or np.any(field < 0):
        raise PorejaxError("diffusivity must be finite and non-negative everywhere: clip or fix the field")
    return _run(
        field if field.ndim == 4 else field[None],
        field.ndim == 4,
        axis,
        side_boundary,
        rtol,
        max_iter,
        return_field,
        dtype,
        volume_fraction,
        preconditioner,
        devices,
    )


def tortuosity(
    mask,
    axis: int = 0,
    side_boundary: str = "mirror",
    rtol: float = 1e-3,
    max_iter: int = 20000,
    return_field: bool = False,
    dtype=jnp.float32,
    preconditioner: str = "multigrid",
    devices=None,
    phase: int | None = None,
) -> TortuosityResult:
    """Tortuosity factor of a binary phase along array axis `axis` (0, 1, 2 = x, y, z).

    mask: (D, H, W) or (B, D, H, W), 0/1 or bool, True = conducting phase; or, with `phase` given, integer
    labels of which the voxels equal to `phase` conduct (a phase absent from a volume gives tau = inf).
    side_boundary: "mirror"
    (zero flux, TauFactor `Solver`) or "periodic" (TauFactor `PeriodicSolver`) on the four side faces.
    rtol: relative tolerance on the plane-flux spread and on the change of tau between checks.
    max_iter: CG iteration limit (the result then has converged=False; so does a solve whose flux spread
    stalls above rtol at float rounding level: it stops after 50 checks without a new low).
    dtype: jnp.float32 or jnp.float64.
    preconditioner: "multigrid" (one V-cycle per CG iteration, fastest) or "jacobi" (diagonal).
    A batch is solved by `jax.vmap` of the jitted solver (the loop runs until every volume converged).
    devices: None (one device) or a sequence of devices (e.g. `jax.local_devices()`) over which the field
    is partitioned along the first side axis (domain decomposition; XLA's partitioner exchanges the halos).

    Returns a TortuosityResult of numpy scalars for one volume, (B,) arrays for a batch; tau = inf and
    relative_diffusivity = 0 when no path spans the volume along `axis`.
    """
    if phase is not None:
        labels, batched = as_batch(mask, "labels")
        batch = labels == phase
    else:
        batch, batched = as_mask_batch(mask, "mask")
    return _run(batch, batched, axis, side_boundary, rtol, max_iter, return_field, dtype, None, preconditioner, devices)


def _run(
    batch: np.ndarray,
    batched: bool,
    axis: int,
    side_boundary: str,
    rtol: float,
    max_iter: int,
    return_field: bool,
    dtype,
    volume_fraction,
    preconditioner: str,
    devices=None,
) -> TortuosityResult:
    axis = check_axis(axis)
    if side_boundary not in SIDE_BOUNDARIES:
        raise PorejaxError(f"side_boundary must be one of {SIDE_BOUNDARIES}, got {side_boundary!r}")
    if preconditioner not in PRECONDITIONERS:
        raise PorejaxError(f"preconditioner must be one of {PRECONDITIONERS}, got {preconditioner!r}")
    if not (np.isfinite(rtol) and 0 < rtol < 1):
        raise PorejaxError(f"rtol must be a number between 0 and 1, got {rtol!r}")
    if int(max_iter) < 1:
        raise PorejaxError(f"max_iter must be a positive number of iterations, got {max_iter!r}")
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.float32, jnp.float64):
        raise PorejaxError(f"dtype must be float32 or float64, got {dtype}")
    phi = (
        np.count_nonzero(batch > 0, axis=(1, 2, 3)) / np.prod(batch.shape[1:])
        if volume_fraction is None
        else np.broadcast_to(np.asarray(volume_fraction, np.float64), batch.shape[:1])
    )
    with jax.enable_x64(dtype == jnp.float64):
        field = np.moveaxis(batch, axis + 1, 1).astype(dtype)
        d_rel, iterations, converged, conc, flux = jax.device_get(
            _solve_batch(
                jax.device_put(field, _domain_sharding(devices, field.shape)),
                jnp.asarray(rtol, dtype),
                periodic_sides=side_boundary == "periodic",
                max_iter=int(max_iter),
                return_field=return_field,
                preconditioner=preconditioner,
            )
        )
    if return_field:  # back from the transport frame (transport axis first) to array axes
        frame = [axis] + [a for a in range(3) if a != axis]  # frame axis k is array axis frame[k]
        conc = np.moveaxis(conc, 1, axis + 1)
        flux = np.moveaxis(flux[:, [frame.index(a) for a in range(3)]], 2, axis + 2)
    d_rel = np.maximum(np.asarray(d_rel, np.float64), 0.0)
    with np.errstate(divide="ignore"):
        tau = np.where(d_rel > 0, phi / np.where(d_rel > 0, d_rel, 1), np.inf)
    result = TortuosityResult(tau, d_rel, np.asarray(iterations), np.asarray(converged), conc, flux)
    return TortuosityResult(*(single_or_batch(field, batched) for field in result))
