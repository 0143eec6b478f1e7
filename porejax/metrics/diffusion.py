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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.metrics._common import as_batch, as_mask_batch, check_axis, single_or_batch
from porejax.metrics.conjugate_gradient import solve_batch

SIDE_BOUNDARIES = ("mirror", "periodic")
PRECONDITIONERS = ("multigrid", "jacobi")


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
            solve_batch(
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
