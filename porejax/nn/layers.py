"""3D convolution and transposed convolution, channels last, with per-axis zero or circular padding.

Semantics and output sizes match PyTorch's `Conv3d` and `ConvTranspose3d` for the same kernel size k,
stride s and padding p (kernels are stored (k, k, k, C_in, C_out)):

- conv:            y[o] = sum_t x[s*o + t - p] w[t],             size (n + 2p - k) // s + 1
- transposed conv: y[o] = sum_{i,t : o = s*i + t - p} x[i] w[t], size (n - 1) * s - 2p + k

With circular padding the input wraps around: the convolution pads circularly, and the transposed
convolution wraps its output modulo s*n (size exactly s*n), so a periodic input gives a periodic output.

On XLA's CPU backend the textbook forms of a stride-2 transposed convolution (input dilation) and of the
input gradient of a stride-2 convolution are 6-100x slower than equivalent stride-1 forms. When k is a
multiple of s, both layers are therefore computed exactly through stride-1 convolutions:
the transposed convolution as a sub-pixel (phase-decomposed) convolution followed by depth-to-space, the
convolution as space-to-depth followed by a convolution. `*_reference` give the textbook forms (tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from porejax.nn.padding import pad_spatial

_DIMS = ("NDHWC", "DHWIO", "NDHWC")
Modes = Sequence[str]
ZEROS: tuple[str, str, str] = ("zeros", "zeros", "zeros")


def _conv_valid(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1) -> jnp.ndarray:
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride,) * 3, "VALID",
                                        dimension_numbers=_DIMS)


def conv3d_output_size(n: int, kernel_size: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel_size) // stride + 1


def conv_transpose3d_output_size(n: int, kernel_size: int, stride: int, padding: int,
                                 circular: bool = False) -> int:
    return stride * n if circular else (n - 1) * stride - 2 * padding + kernel_size


def conv3d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1, padding: int = 0,
           modes: Modes = ZEROS) -> jnp.ndarray:
    """Convolution (cross-correlation) of x (B, D, H, W, C_in) with kernel (k, k, k, C_in, C_out)."""
    k, s = kernel.shape[0], stride
    x = pad_spatial(x, [(padding, padding)] * 3, modes)
    if s == 1 or k % s:
        return _conv_valid(x, kernel, s)
    # space-to-depth: a stride-s conv with kernel k == a stride-1 conv with kernel k/s on s^3 C_in channels
    q = k // s
    b, c_in, c_out = x.shape[0], kernel.shape[3], kernel.shape[4]
    out = [(n - k) // s + 1 for n in x.shape[1:4]]
    keep = [s * (o + q - 1) for o in out]
    x = x[:, :keep[0], :keep[1], :keep[2], :]
    x = x.reshape(b, keep[0] // s, s, keep[1] // s, s, keep[2] // s, s, c_in)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, keep[0] // s, keep[1] // s, keep[2] // s, s**3 * c_in)
    w = kernel.reshape(q, s, q, s, q, s, c_in, c_out).transpose(0, 2, 4, 1, 3, 5, 6, 7)
    return _conv_valid(x, w.reshape(q, q, q, s**3 * c_in, c_out))


def conv_transpose3d(x: jnp.ndarray, kernel: jnp.ndarray, stride: int = 1, padding: int = 0,
                     modes: Modes = ZEROS) -> jnp.ndarray:
    """Transposed convolution of x (B, D, H, W, C_in) with kernel (k, k, k, C_in, C_out), PyTorch semantics."""
    k, s, p = kernel.shape[0], stride, padding
    if k % s:
        return conv_transpose3d_reference(x, kernel, s, p, modes)
    # Sub-pixel decomposition: output o = s*m + r reads q = k/s consecutive inputs starting at m + c_r,
    # with kernel taps t -> s*(q - f_r - 1 - t) + r + p, where f_r = (r + p) // s and c_r = f_r + 1 - q.
    q = k // s
    phases = np.arange(s)
    first = (phases + p) // s + 1 - q                                   # c_r
    taps = s * (q - (phases + p) // s - 1 - np.arange(q)[:, None]) + phases + p  # (q, s): t, r -> kernel index
    c_in, c_out = kernel.shape[3], kernel.shape[4]
    w = kernel
    for axis in (0, 2, 4):  # gather (k) -> (q, s) along each spatial kernel axis
        w = jnp.take(w, taps.reshape(-1), axis=axis)
        w = w.reshape(w.shape[:axis] + (q, s) + w.shape[axis + 1:])
    w = w.transpose(0, 2, 4, 6, 1, 3, 5, 7).reshape(q, q, q, c_in, s**3 * c_out)

    sizes = x.shape[1:4]
    circular = [m == "circular" for m in modes]
    blocks = [n if circ else -(-conv_transpose3d_output_size(n, k, s, p) // s) for n, circ in zip(sizes, circular)]
    pad_before = max(0, -int(first.min()))
    pads = [(pad_before, max(0, m - 1 + int(first.max()) + pad_before + q - n)) for n, m in zip(sizes, blocks)]
    z = _conv_valid(pad_spatial(x, pads, modes), w)
    z = z.reshape(z.shape[:4] + (s, s, s, c_out))
    b = x.shape[0]
    rows = []
    for rd in range(s):
        for rh in range(s):
            for rw in range(s):
                o = [pad_before + int(first[r]) for r in (rd, rh, rw)]
                rows.append(z[:, o[0]:o[0] + blocks[0], o[1]:o[1] + blocks[1], o[2]:o[2] + blocks[2], rd, rh, rw, :])
    y = jnp.stack(rows, axis=-2).reshape(b, *blocks, s, s, s, c_out)
    y = y.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, s * blocks[0], s * blocks[1], s * blocks[2], c_out)
    out = [conv_transpose3d_output_size(n, k, s, p, circ) for n, circ in zip(sizes, circular)]
    return y[:, :out[0], :out[1], :out[2], :]


def conv3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook strided convolution (for tests)."""
    return _conv_valid(pad_spatial(x, [(padding, padding)] * 3, modes), kernel, stride)


def conv_transpose3d_reference(x, kernel, stride=1, padding=0, modes: Modes = ZEROS):
    """Textbook transposed convolution by input dilation; circular axes wrap the full output modulo s*n."""
    k, s, p = kernel.shape[0], stride, padding
    full = jax.lax.conv_general_dilated(x, jnp.flip(kernel, (0, 1, 2)).astype(x.dtype), (1,) * 3,
                                        [(k - 1, k - 1)] * 3, lhs_dilation=(s,) * 3, dimension_numbers=_DIMS)
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


class Conv3d(nn.Module):
    """Flax wrapper of `conv3d` (no bias, as in DC-GAN); kernel init N(0, 0.02)."""

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray, modes: Modes = ZEROS) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", normal_init(0.02), (k, k, k, x.shape[-1], self.features))
        return conv3d(x, kernel, self.stride, self.padding, modes)


class ConvTranspose3d(nn.Module):
    """Flax wrapper of `conv_transpose3d` (no bias, as in DC-GAN); kernel init N(0, 0.02)."""

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray, modes: Modes = ZEROS) -> jnp.ndarray:
        k = self.kernel_size
        kernel = self.param("kernel", normal_init(0.02), (k, k, k, x.shape[-1], self.features))
        return conv_transpose3d(x, kernel, self.stride, self.padding, modes)
