"""The matrix-product formulations of the convolutions equal the textbook forms, values and gradients.

Every path of `porejax.nn.layers` is forced in turn (all-phase or per-phase sub-pixel convolution, patches
times kernel or XLA's convolution) and compared, in float32, with the textbook convolution
(`*_reference`) within 1e-5 relative to the scale of the result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax.nn import layers

TOL = 1e-5
MODES = [("zeros",) * 3, ("circular", "zeros", "circular")]


def _close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOL * float(np.abs(want).max()), rtol=0)


def _check(fast, reference, x, w, stride, padding, modes):
    """Outputs and the gradients of a non-linear loss w.r.t. input and kernel agree."""
    def value_and_grads(f):
        def loss(x, w, cot):
            y = f(x, w, stride, padding, modes)
            return jnp.sum(jnp.tanh(y) * cot), y

        shape = jax.eval_shape(lambda: f(x, w, stride, padding, modes)).shape
        cot = jnp.asarray(np.random.default_rng(7).normal(size=shape).astype(np.float32))
        (_, y), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, w, cot)
        return (y, *grads)

    for got, want in zip(value_and_grads(fast), value_and_grads(reference)):
        _close(got, want)


@pytest.fixture(params=["all-phase", "per-phase"])
def phase_path(request, monkeypatch):
    monkeypatch.setattr(layers, "ALL_PHASE_MAX_WASTE", np.inf if request.param == "all-phase" else 0.0)
    return request.param


@pytest.fixture(params=["im2col", "xla"])
def conv_path(request, monkeypatch):
    if request.param == "xla":
        monkeypatch.setattr(layers, "IM2COL_MAX_BYTES", 0)
    return request.param


def _arrays(shape, kernel, seed):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=shape).astype(np.float32)),
            jnp.asarray(0.3 * rng.normal(size=kernel).astype(np.float32)))


# channels (C_in, C_out): the first pair makes the matrix-product form im2col, the second col2im
@pytest.mark.parametrize("channels", [(3, 4), (12, 1)])
@pytest.mark.parametrize("modes", MODES)
@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (6, 2, 2), (4, 1, 0), (2, 2, 0)])
def test_transposed_conv_paths(phase_path, conv_path, channels, modes, k, s, p):
    x, w = _arrays((2, 6, 5, 7, channels[0]), (k, k, k, *channels), k + s + p)
    _check(layers.conv_transpose3d, layers.conv_transpose3d_reference, x, w, s, p, modes)


@pytest.mark.parametrize("channels", [(3, 5), (6, 2)])
@pytest.mark.parametrize("modes", MODES)
@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (2, 1, 1), (4, 1, 0)])
def test_conv_paths(conv_path, channels, modes, k, s, p):
    x, w = _arrays((2, 9, 8, 11, channels[0]), (k, k, k, *channels), k + s + p)
    _check(layers.conv3d, layers.conv3d_reference, x, w, s, p, modes)


def test_paper_shaped_layers_take_the_matrix_product_path():
    """The generator's 2x-upsampling layers use the all-phase form and patches; values and gradients agree."""
    x, w = _arrays((2, 16, 16, 16, 8), (4, 4, 4, 8, 4), 0)
    assert np.prod([(16 + 1) / 16] * 3) <= layers.ALL_PHASE_MAX_WASTE
    jaxpr = str(jax.make_jaxpr(lambda x, w: layers.conv_transpose3d(x, w, 2, 1))(x, w))
    assert "custom_vjp_call" in jaxpr and "conv_general_dilated" not in jaxpr
    _check(layers.conv_transpose3d, layers.conv_transpose3d_reference, x, w, 2, 1, ("zeros",) * 3)
    xd, wd = _arrays((2, 16, 16, 16, 4), (4, 4, 4, 4, 8), 1)
    assert "conv_general_dilated" not in str(jax.make_jaxpr(lambda x, w: layers.conv3d(x, w, 2, 1))(xd, wd))
    _check(layers.conv3d, layers.conv3d_reference, xd, wd, 2, 1, ("zeros",) * 3)


@pytest.mark.parametrize("contraction", ["wide", "row blocks"])
@pytest.mark.parametrize("channels", [(3, 4), (12, 1)])
def test_kernel_gradient_layouts(monkeypatch, contraction, channels):
    """Both layouts of the kernel gradient (transposed patches / one transposed operand, or summed row-block
    products), forced at test sizes, in every matrix-product form: values and gradients agree."""
    if contraction == "wide":
        monkeypatch.setattr(layers, "WIDE_PRODUCT", 1)
    else:
        monkeypatch.setattr(layers, "WIDE_PRODUCT", 1 << 30)
        monkeypatch.setattr(layers, "CONTRACT_BLOCKS", 2)
        monkeypatch.setattr(layers, "CONTRACT_BLOCK_MIN_ROWS", 1)
    x, w = _arrays((2, 6, 5, 7, channels[0]), (4, 4, 4, *channels), 21)
    _check(layers.conv_transpose3d, layers.conv_transpose3d_reference, x, w, 2, 1, MODES[1])
    x, w = _arrays((2, 9, 8, 11, channels[0]), (4, 4, 4, *channels), 22)
    _check(layers.conv3d, layers.conv3d_reference, x, w, 2, 1, MODES[0])


@pytest.mark.parametrize("channels", [(5, 4), (4, 1)])
def test_point_layers(channels):
    """The paper's end layers, where the kernel overhangs the input on every side (taps reading only padding):
    a 1^3 latent to 4^3 (transposed, k 4, p 0) and 4^3 to 1^3 (conv, k 4, p 0); both matrix-product forms."""
    c_in, c_out = channels
    x, w = _arrays((3, 1, 1, 1, c_in), (4, 4, 4, c_in, c_out), 11)
    _check(layers.conv_transpose3d, layers.conv_transpose3d_reference, x, w, 1, 0, ("zeros",) * 3)
    x, w = _arrays((3, 4, 4, 4, c_in), (4, 4, 4, c_in, c_out), 12)
    _check(layers.conv3d, layers.conv3d_reference, x, w, 1, 0, ("zeros",) * 3)


def test_second_order_gradients_match():
    """A gradient penalty differentiates through the discriminator's gradient (WGAN-GP)."""
    x, w = _arrays((2, 8, 8, 8, 3), (4, 4, 4, 3, 4), 3)

    def penalty(f, w):
        g = jax.grad(lambda x: jnp.sum(jnp.sin(f(x, w, 2, 1))))(x)
        return jnp.sum(g**2)

    _close(jax.grad(lambda w: penalty(layers.conv3d, w))(w), jax.grad(lambda w: penalty(layers.conv3d_reference, w))(w))
