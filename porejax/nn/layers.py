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
`IM2COL_MAX_BYTES` (large generation tiles) are made in slabs along the first spatial axis, so memory stays
bounded (the stride-1 forms and their cost model: porejax.nn.matmul_conv).
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
from porejax.nn.matmul_conv import DIMS, conv_stride1, conv_valid, extend
from porejax.nn.padding import ZEROS, Modes, pad_spatial


# a sub-pixel layer computes all s^3 phases in one convolution over the union of their windows unless
# that computes more than this factor of extra outputs (small inputs); then one convolution per phase
ALL_PHASE_MAX_WASTE = 1.3
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


def _window(
    x: jnp.ndarray, begin: Sequence[int], end: Sequence[int], modes: Modes
) -> tuple[jnp.ndarray, tuple[tuple[int, int], ...]]:
    """Input indices [begin, end) per spatial axis, wrapped on circular axes, zero outside on the others.

    Returns (part of x, pads) such that extending the part by the pads (`extend` with `modes`) gives the
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
        [extend(z[..., r, :], _phase_pads(o, z.shape, blocks, modes), modes) for r, o in enumerate(offsets)], axis=-2
    )


def _phase_pads(offset, shape, blocks, modes) -> list[tuple[int, int]]:
    """The `extend` amounts that cut (zero axes) or roll (circular axes) one phase's window out of z."""
    return [
        (-o, o) if mode == "circular" else (-o, m + o - n) for o, n, m, mode in zip(offset, shape[1:4], blocks, modes)
    ]


def _phase_windows_fwd(z, offsets, blocks, modes):
    return _phase_windows(z, offsets, blocks, modes), z.shape


def _phase_windows_bwd(offsets, blocks, modes, shape, dy):
    # every element of z belongs to one phase: place each phase's gradient (no sum of full-size arrays)
    def place(r, offset):
        return extend(dy[..., r, :], [(-b, -a) for b, a in _phase_pads(offset, shape, blocks, modes)], modes)

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
        return conv_valid(x, kernel, s)
    if s == 1:
        return conv_stride1(x, kernel)
    if k % s:
        return conv_valid(x, kernel, s)
    # space-to-depth: a stride-s conv with kernel k == a stride-1 conv with kernel k/s on s^3 C_in channels
    q = k // s
    b, c_in, c_out = x.shape[0], kernel.shape[3], kernel.shape[4]
    out = [(n - k) // s + 1 for n in x.shape[1:4]]
    keep = [s * (o + q - 1) for o in out]
    x = x[:, : keep[0], : keep[1], : keep[2], :]
    x = x.reshape(b, keep[0] // s, s, keep[1] // s, s, keep[2] // s, s, c_in)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, keep[0] // s, keep[1] // s, keep[2] // s, s**3 * c_in)
    w = kernel.reshape(q, s, q, s, q, s, c_in, c_out).transpose(0, 2, 4, 1, 3, 5, 6, 7)
    return conv_stride1(x, w.reshape(q, q, q, s**3 * c_in, c_out))


# Sub-pixel decomposition of a transposed convolution: output o = s*m + r reads q = k/s consecutive inputs
# starting at m + c_r, with kernel taps t -> s*(q - f_r - 1 - t) + r + p, where f_r = (r + p) // s and
# c_r = f_r + 1 - q.
def subpixel_kernel(kernel: jnp.ndarray, stride: int, padding: int) -> jnp.ndarray:
    """Kernel (k, k, k, C_in, C_out) of a transposed convolution with k % stride == 0 -> its sub-pixel form
    (q, q, q, C_in, s, s, s, C_out), q = k / s: what the "matmul" form of `conv_transpose3d` multiplies with.
    A numpy kernel gives a numpy result (generation prepares kernels on the host: nothing to compile)."""
    xp = np if isinstance(kernel, np.ndarray) else jnp
    s, p = stride, padding
    q = kernel.shape[0] // s
    w = kernel
    # the kernel index s (q - f_r - 1 - t) + r + p = s (q - 1 - t) + (r + p) mod s: along each spatial axis, the
    # (k) taps split as (q, s), reversed along q and rolled by -p along s (for s = 2 and odd p a reversal too).
    # A permutation without gathers, so its gradient is one too (a gather's would scatter into zeros).
    for axis in (0, 2, 4):
        w = w.reshape(w.shape[:axis] + (q, s) + w.shape[axis + 1 :])
        w = xp.flip(w, (axis, axis + 1) if s == 2 and p % 2 else axis)
        if s != 2 and p % s:
            w = xp.roll(w, -p, axis + 1)
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
        dimension_numbers=DIMS,
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
        z = conv_stride1(window, w.reshape(q, q, q, c_in, s**3 * c_out), pads, modes, form)
        offsets = tuple(tuple(int(first[r]) - lo for r in rs) for rs in phase_list)
        y = _phase_windows(z.reshape(*z.shape[:4], s**3, c_out), offsets, tuple(blocks), tuple(modes))
    else:
        rows = []
        for rs in phase_list:
            begin = [int(first[r]) for r in rs]
            window, pads = _window(x, begin, [b0 + m + q - 1 for b0, m in zip(begin, blocks)], modes)
            rows.append(conv_stride1(window, w[:, :, :, :, rs[0], rs[1], rs[2], :], pads, modes, form))
        y = jnp.stack(rows, axis=-2)
    b = x.shape[0]
    y = y.reshape(b, *blocks, s, s, s, c_out)
    y = y.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, s * blocks[0], s * blocks[1], s * blocks[2], c_out)
    out = [conv_transpose3d_output_size(n, k, s, p, circ) for n, circ in zip(sizes, circular)]
    return y[:, : out[0], : out[1], : out[2], :]


def conv3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook strided convolution (for tests)."""
    return conv_valid(pad_spatial(x, [(padding, padding)] * 3, modes), kernel, stride)


def conv_transpose3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook transposed convolution by input dilation; circular axes wrap the full output modulo s*n."""
    k, s, p = kernel.shape[0], stride, padding
    full = jax.lax.conv_general_dilated(
        x,
        jnp.flip(kernel, (0, 1, 2)).astype(x.dtype),
        (1,) * 3,
        [(k - 1, k - 1)] * 3,
        lhs_dilation=(s,) * 3,
        dimension_numbers=DIMS,
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
