"""3D convolution and transposed convolution, channels last, with per-axis zero or circular padding.

Semantics and output sizes match PyTorch's `Conv3d` and `ConvTranspose3d` for the same kernel size k,
stride s and padding p (kernels are stored (k, k, k, C_in, C_out)):

- conv:            y[o] = sum_t x[s*o + t - p] w[t],             size (n + 2p - k) // s + 1
- transposed conv: y[o] = sum_{i,t : o = s*i + t - p} x[i] w[t], size (n - 1) * s - 2p + k

With circular padding the input wraps around: the convolution pads circularly, and the transposed
convolution wraps its output modulo s*n (size exactly s*n), so a periodic input gives a periodic output.

Two formulations, chosen per backend at trace time (`conv_formulation`): "xla", XLA's own convolutions
(`lax.conv_general_dilated`; transposed by input dilation), on GPU and TPU, where they run as cuDNN /
TPU convolutions; and "matmul", the matrix-product forms below, on CPU. The environment variable
POREJAX_CONV=xla|matmul overrides the choice (benchmarks); both give the same values within float
rounding (tests).

On XLA's CPU backend the textbook forms of a stride-2 transposed convolution (input dilation) and of the
input gradient of a stride-2 convolution are much slower than equivalent stride-1 forms, and XLA's own
convolutions run below the speed of its matrix products (measurements: benchmarks/NOTES.md). When k is a multiple of
s, both layers are
therefore computed exactly through stride-1 convolutions with a small kernel (q = k / s taps per axis):
the transposed convolution as a sub-pixel (phase-decomposed) convolution followed by depth-to-space, the
convolution as space-to-depth followed by a convolution. Every stride-1 convolution is then one matrix
product: patches (the q^3 shifted windows stacked along channels) times the kernel ("im2col"), or, when
it has fewer output than input channels, the input times the kernel summed back over the taps
("col2im"); custom gradients make the backward passes matrix products too. Intermediates above
`IM2COL_MAX_BYTES` (large generation tiles, where memory matters more than speed) use XLA's convolution.
`*_reference` give the textbook forms (tests).

Mixed precision: the input may be bfloat16 while the kernel stays float32 (master weights); the matrix
products then read bfloat16 and accumulate in float32, the result and the kernel gradient are float32,
the input gradient bfloat16. `Conv3d(..., dtype=jnp.bfloat16)` casts its input so.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.nn.padding import pad_spatial

_DIMS = ("NDHWC", "DHWIO", "NDHWC")
Modes = Sequence[str]
ZEROS: tuple[str, str, str] = ("zeros", "zeros", "zeros")
IM2COL_MAX_BYTES = 1 << 30
MOVE_COST_FLOPS = 100  # matrix-product flops costing as much as writing and reading one intermediate element
# a sub-pixel layer computes all s^3 phases in one convolution over the union of their windows unless
# that computes more than this factor of extra outputs (small inputs); then one convolution per phase
ALL_PHASE_MAX_WASTE = 1.3
# kernel gradients (sums over all positions of outer products) of at least this width on both sides are
# one product with a transposed operand; narrower ones are CONTRACT_BLOCKS row-block products summed
WIDE_PRODUCT = 256
CONTRACT_BLOCKS = 8
CONTRACT_BLOCK_MIN_ROWS = 4096
PREPARED = "prepared"  # optional variable collection: per layer, its kernel prepared for `op` ("kernel")
CONV_ENV = "POREJAX_CONV"
FORMULATIONS = ("matmul", "xla")


def conv_formulation(form: str | None = None) -> str:
    """The convolution formulation to trace: `form` if given, else $POREJAX_CONV, else "matmul" on CPU
    and "xla" on GPU/TPU (`jax.default_backend()`)."""
    choice = form if form is not None else os.environ.get(CONV_ENV, "").strip().lower()
    if not choice:
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    if choice not in FORMULATIONS:
        raise PorejaxError(
            f"convolution formulation must be one of {FORMULATIONS}, got {choice!r}: "
            f"set {CONV_ENV}=matmul or {CONV_ENV}=xla, or unset it"
        )
    return choice


def _conv_valid(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (stride,) * 3, "VALID", dimension_numbers=_DIMS, preferred_element_type=kernel.dtype
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


def _extend(x: jnp.ndarray, pads: Sequence[tuple[int, int]], modes: Modes) -> jnp.ndarray:
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
# `_conv_stride1` picks the cheaper form (matrix-product flops plus intermediate size). Products read x's dtype,
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
    xp = _extend(x, pads, modes)
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
    xp = _extend(x, pads, modes)
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
    dyp = _extend(dy.astype(x.dtype), [(q - 1 - b, q - 1 - a) for b, a in pads], modes)
    patches = _windows(dyp, q, x.shape[1:4])
    dx = jnp.dot(patches, _matrix(_flip_taps(kernel), x.dtype), preferred_element_type=jnp.float32)
    dflipped = _contract(x, patches).reshape(c_in, q, q, q, c_out)
    dkernel = jnp.flip(dflipped.transpose(1, 2, 3, 0, 4), (0, 1, 2))
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_conv_col2im.defvjp(
    lambda x, kernel, pads, modes: (_conv_col2im(x, kernel, pads, modes), (x, kernel)), _conv_col2im_bwd
)


def _conv_stride1(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    pads: tuple[tuple[int, int], ...] = ((0, 0),) * 3,
    modes: Modes = ZEROS,
    form: str = "matmul",
) -> jnp.ndarray:
    """Valid stride-1 convolution of x (B, D, H, W, C_in), extended by `pads` (`_extend`: zeros, or wrapped on
    circular axes, where before + after must be q - 1), with kernel (q, q, q, C_in, C_out).

    form "xla": XLA's convolution. "matmul": im2col multiplies at every output position, col2im at every
    input position (so it skips the padding), each with an intermediate of q^3 C_in or q^3 C_out per
    position: the cheaper one is used.
    """
    q, c_in, c_out = kernel.shape[0], kernel.shape[3], kernel.shape[4]
    if any(m == "circular" and b + a != q - 1 for (b, a), m in zip(pads, modes)):
        raise ValueError(f"circular pads must add up to q - 1 = {q - 1}, got {pads} for modes {modes}")
    if form == "xla":
        return _conv_valid(_extend(x, pads, modes), kernel)
    inputs = x.shape[0] * int(np.prod(x.shape[1:4]))
    outputs = x.shape[0] * int(np.prod([n + b + a - q + 1 for n, (b, a) in zip(x.shape[1:4], pads)]))
    cost = {
        _conv_im2col: (outputs * q**3 * c_in * (2 * c_out + MOVE_COST_FLOPS), outputs * q**3 * c_in),
        _conv_col2im: (inputs * q**3 * c_out * (2 * c_in + MOVE_COST_FLOPS), inputs * q**3 * c_out),
    }
    form = min(cost, key=lambda f: cost[f][0])
    if cost[form][1] * 4 > IM2COL_MAX_BYTES:
        return _conv_valid(_extend(x, pads, modes), kernel)
    return form(x, kernel, tuple(tuple(p) for p in pads), tuple(modes))


def _window(
    x: jnp.ndarray, begin: Sequence[int], end: Sequence[int], modes: Modes
) -> tuple[jnp.ndarray, tuple[tuple[int, int], ...]]:
    """Input indices [begin, end) per spatial axis, wrapped on circular axes, zero outside on the others.

    Returns (part of x, pads) such that extending the part by the pads (`_extend` with `modes`) gives the
    window. The extension is left to the convolution: its gradient then skips the zero padding, and no
    wrapped copy of the input is made (circular axes keep all of x).
    """
    pads = []
    for axis, (b0, e0, mode) in enumerate(zip(begin, end, modes)):
        n = x.shape[axis + 1]
        if mode != "circular":
            x = jax.lax.slice_in_dim(x, max(0, b0), min(n, e0), axis=axis + 1)
            pads.append((max(0, -b0), max(0, e0 - n)))
        else:
            pads.append((-b0, e0 - n))
    return x, tuple(pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _phase_windows(
    z: jnp.ndarray, offsets: tuple[tuple[int, ...], ...], blocks: tuple[int, ...], modes: Modes
) -> jnp.ndarray:
    """y[..., r, :] = z[:, o_r : o_r + blocks, r, :] for z (B, D, H, W, P, C) and P phase offsets o_r; on
    circular axes (where z has the block's size) the window wraps: z rolled by -o_r."""
    return jnp.stack(
        [_extend(z[..., r, :], _phase_pads(o, z.shape, blocks, modes), modes) for r, o in enumerate(offsets)], axis=-2
    )


def _phase_pads(offset, shape, blocks, modes) -> list[tuple[int, int]]:
    """The `_extend` amounts that cut (zero axes) or roll (circular axes) one phase's window out of z."""
    return [
        (-o, o) if mode == "circular" else (-o, m + o - n) for o, n, m, mode in zip(offset, shape[1:4], blocks, modes)
    ]


def _phase_windows_fwd(z, offsets, blocks, modes):
    return _phase_windows(z, offsets, blocks, modes), z.shape


def _phase_windows_bwd(offsets, blocks, modes, shape, dy):
    # every element of z belongs to one phase: place each phase's gradient (no sum of full-size arrays)
    def place(r, offset):
        return _extend(dy[..., r, :], [(-b, -a) for b, a in _phase_pads(offset, shape, blocks, modes)], modes)

    return (jnp.stack([place(r, o) for r, o in enumerate(offsets)], axis=-2),)


_phase_windows.defvjp(_phase_windows_fwd, _phase_windows_bwd)


def conv3d_output_size(n: int, kernel_size: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel_size) // stride + 1


def conv_transpose3d_output_size(n: int, kernel_size: int, stride: int, padding: int, circular: bool = False) -> int:
    return stride * n if circular else (n - 1) * stride - 2 * padding + kernel_size


def _check_operands(x: jnp.ndarray, kernel: jnp.ndarray, kernel_ranks: tuple[int, ...]) -> None:
    """At trace time: x is (B, D, H, W, C_in) and the kernel (k, k, k, C_in, ...) of one of `kernel_ranks`."""
    chex.assert_rank(x, 5)
    chex.assert_rank(kernel, set(kernel_ranks))
    chex.assert_axis_dimension(kernel, 3, x.shape[-1])


def conv3d(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    stride: int = 1,
    padding: int = 0,
    modes: Modes = ZEROS,
    form: str | None = None,
) -> jnp.ndarray:
    """Convolution (cross-correlation) of x (B, D, H, W, C_in) with kernel (k, k, k, C_in, C_out).

    form: "matmul" or "xla" (default `conv_formulation()`)."""
    _check_operands(x, kernel, (5,))
    k, s = kernel.shape[0], stride
    x = pad_spatial(x, [(padding, padding)] * 3, modes)
    if conv_formulation(form) == "xla":
        return _conv_valid(x, kernel, s)
    if s == 1:
        return _conv_stride1(x, kernel)
    if k % s:
        return _conv_valid(x, kernel, s)
    # space-to-depth: a stride-s conv with kernel k == a stride-1 conv with kernel k/s on s^3 C_in channels
    q = k // s
    b, c_in, c_out = x.shape[0], kernel.shape[3], kernel.shape[4]
    out = [(n - k) // s + 1 for n in x.shape[1:4]]
    keep = [s * (o + q - 1) for o in out]
    x = x[:, : keep[0], : keep[1], : keep[2], :]
    x = x.reshape(b, keep[0] // s, s, keep[1] // s, s, keep[2] // s, s, c_in)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, keep[0] // s, keep[1] // s, keep[2] // s, s**3 * c_in)
    w = kernel.reshape(q, s, q, s, q, s, c_in, c_out).transpose(0, 2, 4, 1, 3, 5, 6, 7)
    return _conv_stride1(x, w.reshape(q, q, q, s**3 * c_in, c_out))


# Sub-pixel decomposition of a transposed convolution: output o = s*m + r reads q = k/s consecutive inputs
# starting at m + c_r, with kernel taps t -> s*(q - f_r - 1 - t) + r + p, where f_r = (r + p) // s and
# c_r = f_r + 1 - q.
def subpixel_kernel(kernel: jnp.ndarray, stride: int, padding: int) -> jnp.ndarray:
    """Kernel (k, k, k, C_in, C_out) of a transposed convolution with k % stride == 0 -> its sub-pixel form
    (q, q, q, C_in, s, s, s, C_out), q = k / s: what the "matmul" form of `conv_transpose3d` multiplies with."""
    s, p = stride, padding
    q = kernel.shape[0] // s
    w = kernel
    # the kernel index s (q - f_r - 1 - t) + r + p = s (q - 1 - t) + (r + p) mod s: along each spatial axis, the
    # (k) taps split as (q, s), reversed along q and rolled by -p along s (for s = 2 and odd p a reversal too).
    # A permutation without gathers, so its gradient is one too (a gather's would scatter into zeros).
    for axis in (0, 2, 4):
        w = w.reshape(w.shape[:axis] + (q, s) + w.shape[axis + 1 :])
        w = jnp.flip(w, (axis, axis + 1) if s == 2 and p % 2 else axis)
        if s != 2 and p % s:
            w = jnp.roll(w, -p, axis + 1)
    return w.transpose(0, 2, 4, 6, 1, 3, 5, 7)


def prepare_transpose_kernel(kernel: jnp.ndarray, stride: int, padding: int, form: str | None = None) -> jnp.ndarray:
    """The kernel (k, k, k, C_in, C_out) of `conv_transpose3d` in the form it computes with: the sub-pixel
    form (`subpixel_kernel`) for "matmul" when k % stride == 0, else the kernel itself. Generation prepares
    it once (`porejax.generate.FrozenGenerator`) and passes it in place of the kernel."""
    if conv_formulation(form) == "matmul" and kernel.shape[0] % stride == 0:
        return subpixel_kernel(kernel, stride, padding)
    return kernel


def _conv_transpose_xla(x: jnp.ndarray, kernel: jnp.ndarray, s: int, p: int, modes: Modes) -> jnp.ndarray:
    """`conv_transpose3d` by XLA's input-dilated convolution. A circular axis is first padded circularly
    by the inputs that reach its s*n outputs from beyond either end, so the wrap needs no sum."""
    k = kernel.shape[0]
    pads, crops = [], []
    for n, mode in zip(x.shape[1:4], modes):
        before, after = (max(0, (k - 1 - p) // s), (s - 1 + p) // s) if mode == "circular" else (0, 0)
        pads.append((before, after))
        crops.append((p + s * before, conv_transpose3d_output_size(n, k, s, p, mode == "circular")))
    x = pad_spatial(x, pads, ("circular",) * 3)
    full = [(n - 1) * s + k for n in x.shape[1:4]]
    extra = [max(0, start + size - f) for (start, size), f in zip(crops, full)]  # kernels shorter than s
    y = jax.lax.conv_general_dilated(
        x,
        jnp.flip(kernel, (0, 1, 2)).astype(x.dtype),
        (1,) * 3,
        [(k - 1, k - 1 + e) for e in extra],
        lhs_dilation=(s,) * 3,
        dimension_numbers=_DIMS,
        preferred_element_type=kernel.dtype,
    )
    return y[:, crops[0][0] : sum(crops[0]), crops[1][0] : sum(crops[1]), crops[2][0] : sum(crops[2]), :]


def conv_transpose3d(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    stride: int = 1,
    padding: int = 0,
    modes: Modes = ZEROS,
    form: str | None = None,
) -> jnp.ndarray:
    """Transposed convolution of x (B, D, H, W, C_in) with kernel (k, k, k, C_in, C_out), PyTorch semantics.

    `kernel` may also be given in its sub-pixel form (`subpixel_kernel`, 8 axes). form: "matmul" or "xla"
    (default `conv_formulation()`); a sub-pixel kernel is computed in its sub-pixel form either way, with
    XLA's stride-1 convolutions for "xla"."""
    _check_operands(x, kernel, (5, 8))
    s, p = stride, padding
    form = conv_formulation(form)
    if kernel.ndim == 8:
        w = kernel
        q, c_in, c_out = w.shape[0], w.shape[3], w.shape[7]
        k = q * s
    else:
        k = kernel.shape[0]
        if k % s or form == "xla":
            return _conv_transpose_xla(x, kernel, s, p, modes)
        w, q, c_in, c_out = subpixel_kernel(kernel, s, p), k // s, kernel.shape[3], kernel.shape[4]
    first = (np.arange(s) + p) // s + 1 - q  # c_r

    sizes = x.shape[1:4]
    circular = [m == "circular" for m in modes]
    blocks = [n if circ else -(-conv_transpose3d_output_size(n, k, s, p) // s) for n, circ in zip(sizes, circular)]
    lo, spread = int(first.min()), int(first.max() - first.min())
    phase_list = list(itertools.product(range(s), repeat=3))
    # the union of the phases' windows is `spread` wider on zero axes; on circular axes all phases read the
    # same n wrapped positions (each phase's outputs are the union's rolled), so it costs nothing there
    span = [m if circ else m + spread for m, circ in zip(blocks, circular)]
    if np.prod([u / m for u, m in zip(span, blocks)]) <= ALL_PHASE_MAX_WASTE:
        # one convolution for all phases over the union of their input windows, then each phase's part
        window, pads = _window(x, [lo] * 3, [lo + u + q - 1 for u in span], modes)
        z = _conv_stride1(window, w.reshape(q, q, q, c_in, s**3 * c_out), pads, modes, form)
        offsets = tuple(tuple(int(first[r]) - lo for r in rs) for rs in phase_list)
        y = _phase_windows(z.reshape(*z.shape[:4], s**3, c_out), offsets, tuple(blocks), tuple(modes))
    else:
        rows = []
        for rs in phase_list:
            begin = [int(first[r]) for r in rs]
            window, pads = _window(x, begin, [b0 + m + q - 1 for b0, m in zip(begin, blocks)], modes)
            rows.append(_conv_stride1(window, w[:, :, :, :, rs[0], rs[1], rs[2], :], pads, modes, form))
        y = jnp.stack(rows, axis=-2)
    b = x.shape[0]
    y = y.reshape(b, *blocks, s, s, s, c_out)
    y = y.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, s * blocks[0], s * blocks[1], s * blocks[2], c_out)
    out = [conv_transpose3d_output_size(n, k, s, p, circ) for n, circ in zip(sizes, circular)]
    return y[:, : out[0], : out[1], : out[2], :]


def conv3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook strided convolution (for tests)."""
    return _conv_valid(pad_spatial(x, [(padding, padding)] * 3, modes), kernel, stride)


def conv_transpose3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook transposed convolution by input dilation; circular axes wrap the full output modulo s*n."""
    k, s, p = kernel.shape[0], stride, padding
    full = jax.lax.conv_general_dilated(
        x,
        jnp.flip(kernel, (0, 1, 2)).astype(x.dtype),
        (1,) * 3,
        [(k - 1, k - 1)] * 3,
        lhs_dilation=(s,) * 3,
        dimension_numbers=_DIMS,
    )
    for axis, (n, mode) in enumerate(zip(x.shape[1:4], modes)):  # full has (n-1)*s + k, from o = -p
        ax = axis + 1
        if mode == "circular":
            idx = (np.arange(full.shape[ax]) - p) % (s * n)
            full = jax.ops.segment_sum(jnp.moveaxis(full, ax, 0), idx, num_segments=s * n)
            full = jnp.moveaxis(full, 0, ax)
        else:
            full = jax.lax.slice_in_dim(full, p, full.shape[ax] - p, axis=ax)
    return full


def normal_init(stddev: float = 0.02, mean: float = 0.0):
    """N(mean, stddev) initializer. Samples a flat vector and reshapes it: XLA's CPU compiler takes
    seconds per call on the random-bit generation for rank-5 shapes, but milliseconds for rank 1."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jnp.ndarray:
        return (mean + stddev * jax.random.normal(key, (int(np.prod(shape)),), dtype)).reshape(shape)

    return init


class _ConvModule(nn.Module):
    """A DC-GAN convolution layer (no bias) with kernel init N(0, 0.02), applying `op` (a subclass's)."""

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1
    dtype: Any = None  # compute dtype of the products (e.g. jnp.bfloat16); the kernel stays float32
    op: ClassVar[Callable[..., jnp.ndarray]]  # (x, kernel, stride, padding, modes) -> y, set by each subclass

    @nn.compact
    def __call__(self, x: jnp.ndarray, modes: Modes = ZEROS) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", normal_init(0.02), (k, k, k, x.shape[-1], self.features))
        if self.has_variable(PREPARED, "kernel"):  # the kernel in the form `op` computes with, made once
            kernel = self.get_variable(PREPARED, "kernel")
        return self.op(x if self.dtype is None else x.astype(self.dtype), kernel, self.stride, self.padding, modes)


class Conv3d(_ConvModule):
    """Flax wrapper of `conv3d`."""

    op = staticmethod(conv3d)


class ConvTranspose3d(_ConvModule):
    """Flax wrapper of `conv_transpose3d`."""

    op = staticmethod(conv_transpose3d)
