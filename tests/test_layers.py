"""Convolutions: PyTorch semantics and sizes, the fast stride-1 rewrites equal the textbook forms."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax.nn.layers import (
    conv3d,
    conv3d_output_size,
    conv3d_reference,
    conv_transpose3d,
    conv_transpose3d_output_size,
    conv_transpose3d_reference,
    subpixel_kernel,
)
from porejax.nn.padding import pad_spatial

CASES = [(4, 2, 1), (4, 1, 0), (3, 1, 1), (4, 2, 0), (6, 2, 2), (3, 2, 1)]
MODES = [("zeros",) * 3, ("circular", "zeros", "circular")]


def _brute_transposed(x, w, s, p, modes):
    """y[o] = sum over o = s*i + t - p of x[i] w[t] (PyTorch ConvTranspose3d); circular axes wrap mod s*n."""
    b, *n, _ = x.shape
    k = w.shape[0]
    out = [s * m if mode == "circular" else (m - 1) * s - 2 * p + k for m, mode in zip(n, modes)]
    y = np.zeros((b, *out, w.shape[-1]))
    for i in itertools.product(*[range(m) for m in n]):
        for t in itertools.product(range(k), repeat=3):
            o = [s * ii + tt - p for ii, tt in zip(i, t)]
            o = [oo % size if mode == "circular" else oo for oo, size, mode in zip(o, out, modes)]
            if all(0 <= oo < size for oo, size in zip(o, out)):
                y[(slice(None), *o)] += x[(slice(None), *i)] @ w[t]
    return y


def _brute_conv(x, w, s, p, modes):
    """y[o] = sum_t x[s*o + t - p] w[t] (PyTorch Conv3d), circular axes read x modulo n."""
    b, *n, _ = x.shape
    k = w.shape[0]
    out = [(m + 2 * p - k) // s + 1 for m in n]
    y = np.zeros((b, *out, w.shape[-1]))
    for o in itertools.product(*[range(m) for m in out]):
        for t in itertools.product(range(k), repeat=3):
            i = [s * oo + tt - p for oo, tt in zip(o, t)]
            i = [ii % m if mode == "circular" else ii for ii, m, mode in zip(i, n, modes)]
            if all(0 <= ii < m for ii, m in zip(i, n)):
                y[(slice(None), *o)] += x[(slice(None), *i)] @ w[t]
    return y


@pytest.mark.parametrize("k,s,p", CASES)
@pytest.mark.parametrize("modes", MODES)
def test_transposed_conv_matches_pytorch_semantics(k, s, p, modes):
    rng = np.random.default_rng(k * 10 + s + p)
    x = rng.normal(size=(2, 3, 4, 5, 3)).astype(np.float32)
    w = rng.normal(size=(k, k, k, 3, 2)).astype(np.float32)
    expected = _brute_transposed(x, w, s, p, modes)
    fast = np.asarray(conv_transpose3d(jnp.asarray(x), jnp.asarray(w), s, p, modes))
    reference = np.asarray(conv_transpose3d_reference(jnp.asarray(x), jnp.asarray(w), s, p, modes))
    sizes = [conv_transpose3d_output_size(n, k, s, p, m == "circular") for n, m in zip(x.shape[1:4], modes)]
    assert fast.shape == expected.shape == reference.shape == (2, *sizes, 2)
    np.testing.assert_allclose(fast, expected, atol=2e-5 * np.abs(expected).max())
    np.testing.assert_allclose(reference, expected, atol=2e-5 * np.abs(expected).max())
    if k % s == 0:  # generation passes the kernel prepared once in its sub-pixel form: the same values
        prepared = subpixel_kernel(jnp.asarray(w), s, p)
        assert prepared.shape == (k // s,) * 3 + (3,) + (s,) * 3 + (2,)
        np.testing.assert_array_equal(subpixel_kernel(w, s, p), prepared)  # numpy in, numpy out (on the host)
        np.testing.assert_array_equal(np.asarray(conv_transpose3d(jnp.asarray(x), prepared, s, p, modes)), fast)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (4, 1, 0), (3, 2, 1), (4, 2, 2)])
@pytest.mark.parametrize("modes", MODES)
def test_conv_matches_pytorch_semantics(k, s, p, modes):
    rng = np.random.default_rng(k * 10 + s + p)
    x = rng.normal(size=(2, 8, 6, 9, 3)).astype(np.float32)
    w = rng.normal(size=(k, k, k, 3, 2)).astype(np.float32)
    expected = _brute_conv(x, w, s, p, modes)
    fast = np.asarray(conv3d(jnp.asarray(x), jnp.asarray(w), s, p, modes))
    assert fast.shape == (2, *[conv3d_output_size(n, k, s, p) for n in x.shape[1:4]], 2)
    np.testing.assert_allclose(fast, expected, atol=2e-5 * np.abs(expected).max())
    np.testing.assert_allclose(
        np.asarray(conv3d_reference(jnp.asarray(x), jnp.asarray(w), s, p, modes)),
        expected,
        atol=2e-5 * np.abs(expected).max(),
    )


@pytest.mark.parametrize("layer", ["conv", "transposed"])
def test_fast_forms_have_the_textbook_gradients(layer):
    """The rewrites are exact, so their gradients (what training uses) equal the textbook ones."""
    rng = np.random.default_rng(0)
    n = 8 if layer == "conv" else 4
    x = jnp.asarray(rng.normal(size=(2, n, n, n, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(4, 4, 4, 4, 3)).astype(np.float32) * 0.1)
    fast, ref = (conv3d, conv3d_reference) if layer == "conv" else (conv_transpose3d, conv_transpose3d_reference)

    def loss(f, x, w):
        return jnp.sum(jnp.sin(f(x, w, 2, 1)))

    for argnum in (0, 1):
        g_fast = jax.grad(lambda *a: loss(fast, *a), argnum)(x, w)
        g_ref = jax.grad(lambda *a: loss(ref, *a), argnum)(x, w)
        np.testing.assert_allclose(g_fast, g_ref, atol=1e-5 * float(jnp.abs(g_ref).max()))


def test_padding_modes():
    x = jnp.arange(4.0).reshape(1, 4, 1, 1, 1)
    wrapped = pad_spatial(x, [(2, 5), (0, 0), (0, 0)], ("circular", "zeros", "zeros"))
    assert wrapped[0, :, 0, 0, 0].tolist() == [2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0]
    zeros = pad_spatial(x, [(1, 1), (1, 0), (0, 0)], ("zeros", "zeros", "circular"))
    assert zeros.shape == (1, 6, 2, 1, 1) and float(zeros.sum()) == 6.0
    with pytest.raises(ValueError, match="padding mode"):
        pad_spatial(x, [(1, 1)] * 3, ("reflect", "zeros", "zeros"))
