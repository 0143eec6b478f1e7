"""Stride-1 3D convolutions as matrix products, for XLA's CPU backend (porejax.nn.layers uses them there).

A valid stride-1 convolution with a q^3 kernel is one matrix product: the patches (the q^3 shifted windows
stacked along channels) times the kernel ("im2col"), or, when the layer has fewer output than input
channels, the input times the kernel, summed back over the taps ("col2im"). Custom gradients make both
backward passes matrix products too; zero padding is skipped and circular padding folded into the windows
(no padded copy of the input). `conv_stride1` picks the cheaper form by a cost model (flops plus
MOVE_COST_FLOPS per intermediate element); intermediates above IM2COL_MAX_BYTES are made in slabs along the
first spatial axis.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax.nn.padding import ZEROS, Modes, pad_spatial

DIMS = ("NDHWC", "DHWIO", "NDHWC")  # channels-last volumes, kernels (k, k, k, C_in, C_out)
IM2COL_MAX_BYTES = 1 << 30  # larger intermediates are made in slabs of at most SLAB_BYTES
SLAB_BYTES = 1 << 28
MOVE_COST_FLOPS = 100  # matrix-product flops costing as much as writing and reading one intermediate element
# kernel gradients (sums over all positions of outer products) of at least this width on both sides are
# one product with a transposed operand; narrower ones are CONTRACT_BLOCKS row-block products summed
WIDE_PRODUCT = 256
CONTRACT_BLOCKS = 8
CONTRACT_BLOCK_MIN_ROWS = 4096


def conv_valid(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (stride,) * 3, "VALID", dimension_numbers=DIMS, preferred_element_type=kernel.dtype
    )


def _taps(q: int) -> list[tuple[int, int, int]]:
    return list(itertools.product(range(q), repeat=3))


def _windows(x: jnp.ndarray, q: int, out: Sequence[int]) -> jnp.ndarray:
    """Patches (B, *out, q^3 C) of x (B, D, H, W, C): the q^3 shifted windows stacked along channels."""
    windows = [x[:, a : a + out[0], b : b + out[1], c : c + out[2], :] for a, b, c in _taps(q)]
    return jnp.stack(windows, axis=-2).reshape(x.shape[0], *out, q**3 * x.shape[-1])


def _windows_t(x: jnp.ndarray, q: int, out: Sequence[int]) -> jnp.ndarray:
    """The patches of `_windows` transposed, (q^3 C, B prod(out)), built from x moved channels-first
    (a transpose of x instead of one of the q^3 times larger patches)."""
    xt = x.transpose(4, 0, 1, 2, 3)
    windows = [xt[:, :, a : a + out[0], b : b + out[1], c : c + out[2]] for a, b, c in _taps(q)]
    return jnp.stack(windows).reshape(q**3 * x.shape[-1], -1)


def _shifted_sum(z: jnp.ndarray, out: Sequence[int], sign: int, origin: Sequence[int], modes: Modes) -> jnp.ndarray:
    """y[o] = sum_t z[:, o + origin + sign * t, t, :] over the q^3 taps t of z (B, D, H, W, q^3, C), y of
    spatial size `out`, reading zeros outside z on zero axes (each tap's slice is placed into y, z is never
    padded) and z modulo its size on circular axes (each tap's slice rolled; there z's size is `out`)."""
    q = round(z.shape[4] ** (1 / 3))
    circular = [axis for axis, mode in enumerate(modes) if mode == "circular"]
    total = None
    for i, t in enumerate(_taps(q)):
        lo = [o + sign * ti for o, ti in zip(origin, t)]
        part = z[..., i, :]
        shifts = [-lo[axis] % out[axis] for axis in circular]
        if any(shifts):
            part = jnp.roll(part, shifts, [axis + 1 for axis in circular])
        pads = [
            (0, 0) if axis in circular else (-a, m + a - n) for axis, (a, m, n) in enumerate(zip(lo, out, z.shape[1:4]))
        ]
        part = _pad_or_crop(part, pads)
        total = part if total is None else total + part
    return total


def _pad_or_crop(x: jnp.ndarray, pads: Sequence[tuple[int, int]]) -> jnp.ndarray:
    """Zero-pad the spatial axes of x (B, D, H, W, ...) by (before, after); negative amounts crop."""
    crop = tuple(slice(max(0, -b), x.shape[axis + 1] - max(0, -a)) for axis, (b, a) in enumerate(pads))
    x = x[(slice(None), *crop)]
    widths = [(0, 0)] + [(max(0, b), max(0, a)) for b, a in pads] + [(0, 0)] * (x.ndim - 4)
    return jnp.pad(x, widths) if any(w != (0, 0) for w in widths) else x


def extend(x: jnp.ndarray, pads: Sequence[tuple[int, int]], modes: Modes) -> jnp.ndarray:
    """Extend the spatial axes of x (B, D, H, W, ...) by (before, after): y[j] = x[j - before], zeros outside
    x on zero axes, x modulo its size on circular axes; negative amounts crop."""
    wraps = [(max(0, b), max(0, a)) if m == "circular" else (0, 0) for (b, a), m in zip(pads, modes)]
    if any(w != (0, 0) for w in wraps):
        x = pad_spatial(x, wraps, ("circular",) * 3)
    return _pad_or_crop(x, [(b - w[0], a - w[1]) for (b, a), w in zip(pads, wraps)])


def _flip_taps(kernel: jnp.ndarray) -> jnp.ndarray:
    """(q, q, q, C_in, C_out) -> the adjoint kernel (q, q, q, C_out, C_in), taps reversed."""
    return jnp.flip(kernel, (0, 1, 2)).swapaxes(3, 4)


# Valid stride-1 convolution y[o] = sum_t xp[o + t] K[t] of x extended by `pads` (xp: zeros on zero axes,
# wrapped on circular axes, where before + after = q - 1 so that y has x's size), as matrix
# products, in two equivalent forms with custom gradients (every pass is patches x matrix):
# - im2col: patches of xp (q^3 C_in per output) times K; backward dpatches = dy K^T summed back over the
#   taps (at x's positions only), dK = patches^T dy.
# - col2im: z = x K (q^3 C_out per input) summed over the taps into the outputs; backward dx and dK from
#   the patches of dy (q^3 C_out per input) times the reversed kernel, and x^T times them.
# `conv_stride1` picks the cheaper form (matrix-product flops plus intermediate size). Products read x's dtype,
# accumulate in float32 and return the kernel's dtype (mixed precision: bfloat16 x, float32 kernel).


def _matrix(kernel: jnp.ndarray, dtype) -> jnp.ndarray:
    q, c_in, c_out = kernel.shape[0], kernel.shape[3], kernel.shape[4]
    return kernel.reshape(q**3 * c_in, c_out).astype(dtype)


def _contract(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """sum over batch and space of a (B, D, H, W, M) and b (B, D, H, W, N) -> (M, N), float32.

    Laid out for XLA's CPU products: a transposed into its own array when M and N are both wide (then
    one product with the long axis contracted row-major); otherwise as row blocks whose products are
    summed (one product over all rows put a narrow operand in a layout ~3x slower).
    """
    rows = int(np.prod(a.shape[:4]))
    a, b = a.reshape(rows, a.shape[-1]), b.reshape(rows, b.shape[-1])
    if min(a.shape[1], b.shape[1]) >= WIDE_PRODUCT:
        return jnp.dot(jax.lax.optimization_barrier(a.T), b, preferred_element_type=jnp.float32)
    blocks = CONTRACT_BLOCKS if rows % CONTRACT_BLOCKS == 0 and rows >= CONTRACT_BLOCKS * CONTRACT_BLOCK_MIN_ROWS else 1
    return jax.lax.dot_general(
        a.reshape(blocks, rows // blocks, -1),
        b.reshape(blocks, rows // blocks, -1),
        (((1,), (1,)), ((0,), (0,))),
        preferred_element_type=jnp.float32,
    ).sum(0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_im2col(x: jnp.ndarray, kernel: jnp.ndarray, pads: tuple[tuple[int, int], ...], modes: Modes) -> jnp.ndarray:
    q = kernel.shape[0]
    xp = extend(x, pads, modes)
    return jnp.dot(
        _windows(xp, q, [n - q + 1 for n in xp.shape[1:4]]),
        _matrix(kernel, x.dtype),
        preferred_element_type=kernel.dtype,
    )


def _conv_im2col_bwd(pads, modes, residuals, dy):
    x, kernel = residuals
    q, c_in = kernel.shape[0], kernel.shape[3]
    dy = dy.astype(x.dtype)
    dpatches = jnp.dot(dy, _matrix(kernel, x.dtype).T, preferred_element_type=jnp.float32)
    # x[i] (padded index i + before) was read by output o = i + before - t through tap t
    dpatches = dpatches.reshape(*dpatches.shape[:4], q**3, c_in)
    dx = _shifted_sum(dpatches, x.shape[1:4], -1, [b for b, _ in pads], modes)
    xp = extend(x, pads, modes)
    if min(q**3 * c_in, dy.shape[-1]) >= WIDE_PRODUCT:
        dkernel = jnp.dot(
            _windows_t(xp, q, dy.shape[1:4]), dy.reshape(-1, dy.shape[-1]), preferred_element_type=jnp.float32
        )
    else:
        dkernel = _contract(_windows(xp, q, dy.shape[1:4]), dy)
    return dx.astype(x.dtype), dkernel.reshape(kernel.shape).astype(kernel.dtype)


_conv_im2col.defvjp(
    lambda x, kernel, pads, modes: (_conv_im2col(x, kernel, pads, modes), (x, kernel)), _conv_im2col_bwd
)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_col2im(x: jnp.ndarray, kernel: jnp.ndarray, pads: tuple[tuple[int, int], ...], modes: Modes) -> jnp.ndarray:
    q, c_out = kernel.shape[0], kernel.shape[4]
    z = jnp.dot(
        x,
        kernel.transpose(3, 0, 1, 2, 4).reshape(kernel.shape[3], q**3 * c_out).astype(x.dtype),
        preferred_element_type=kernel.dtype,
    )
    out = [n + b + a - q + 1 for n, (b, a) in zip(x.shape[1:4], pads)]
    return _shifted_sum(z.reshape(*x.shape[:4], q**3, c_out), out, 1, [-b for b, _ in pads], modes)


def _conv_col2im_bwd(pads, modes, residuals, dy):
    x, kernel = residuals
    q, c_in, c_out = kernel.shape[0], kernel.shape[3], kernel.shape[4]
    # dx[i] = sum_t dy[i + before - t] K[t]^T: a valid convolution of dy extended by q - 1 - pads
    dyp = extend(dy.astype(x.dtype), [(q - 1 - b, q - 1 - a) for b, a in pads], modes)
    patches = _windows(dyp, q, x.shape[1:4])
    dx = jnp.dot(patches, _matrix(_flip_taps(kernel), x.dtype), preferred_element_type=jnp.float32)
    dflipped = _contract(x, patches).reshape(c_in, q, q, q, c_out)
    dkernel = jnp.flip(dflipped.transpose(1, 2, 3, 0, 4), (0, 1, 2))
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_conv_col2im.defvjp(
    lambda x, kernel, pads, modes: (_conv_col2im(x, kernel, pads, modes), (x, kernel)), _conv_col2im_bwd
)


def conv_stride1(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    pads: tuple[tuple[int, int], ...] = ((0, 0),) * 3,
    modes: Modes = ZEROS,
    form: str = "matmul",
) -> jnp.ndarray:
    """Valid stride-1 convolution of x (B, D, H, W, C_in), extended by `pads` (`extend`: zeros, or wrapped on
    circular axes, where before + after must be q - 1), with kernel (q, q, q, C_in, C_out).

    form "xla": XLA's convolution. "matmul": im2col multiplies at every output position, col2im at every
    input position (so it skips the padding), each with an intermediate of q^3 C_in or q^3 C_out per
    position: the cheaper one is used.
    """
    q, c_in, c_out = kernel.shape[0], kernel.shape[3], kernel.shape[4]
    if any(m == "circular" and b + a != q - 1 for (b, a), m in zip(pads, modes)):
        raise ValueError(f"circular pads must add up to q - 1 = {q - 1}, got {pads} for modes {modes}")
    if form == "xla":
        return conv_valid(extend(x, pads, modes), kernel)
    inputs = x.shape[0] * int(np.prod(x.shape[1:4]))
    outputs = x.shape[0] * int(np.prod([n + b + a - q + 1 for n, (b, a) in zip(x.shape[1:4], pads)]))
    cost = {
        _conv_im2col: (outputs * q**3 * c_in * (2 * c_out + MOVE_COST_FLOPS), outputs * q**3 * c_in),
        _conv_col2im: (inputs * q**3 * c_out * (2 * c_in + MOVE_COST_FLOPS), inputs * q**3 * c_out),
    }
    form = min(cost, key=lambda f: cost[f][0])
    pads, modes = tuple(tuple(p) for p in pads), tuple(modes)
    if cost[form][1] * 4 > IM2COL_MAX_BYTES:
        return _in_slabs(form, x, kernel, pads, modes, cost[form][1] * 4)
    return form(x, kernel, pads, modes)


def _in_slabs(form, x: jnp.ndarray, kernel: jnp.ndarray, pads, modes: Modes, intermediate_bytes: int) -> jnp.ndarray:
    """`form` (x, kernel, pads, modes) computed slab by slab of output rows along the first spatial axis, each
    slab's intermediate at most SLAB_BYTES (a `lax.map`: one slab's program, compiled once).

    For large generation tiles, whose patches would take gigabytes: memory stays bounded while the products
    keep their speed (XLA's own convolution, which needs no patches, runs these layers much slower:
    benchmarks/NOTES.md)."""
    q = kernel.shape[0]
    x = extend(x, [pads[0], (0, 0), (0, 0)], modes)  # the first axis' padding made, so slabs are valid along it
    rows = x.shape[1] - q + 1
    count = -(-intermediate_bytes // SLAB_BYTES)
    per_slab = -(-rows // count)
    count = -(-rows // per_slab)
    x = jnp.pad(x, [(0, 0), (0, count * per_slab - rows)] + [(0, 0)] * 3)
    slab_pads, slab_modes = ((0, 0), *pads[1:]), ("zeros", *modes[1:])

    def slab(i):
        part = jax.lax.dynamic_slice_in_dim(x, i * per_slab, per_slab + q - 1, axis=1)
        return form(part, kernel, slab_pads, slab_modes)

    y = jax.lax.map(slab, jnp.arange(count))  # (count, B, per_slab, H', W', C_out)
    y = jnp.moveaxis(y, 0, 1).reshape(x.shape[0], count * per_slab, *y.shape[3:])
    return y[:, :rows]
