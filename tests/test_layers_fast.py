"""The matrix-product formulations of the convolutions equal the textbook forms, values and gradients.

Every path of `porejax.nn.layers` is forced in turn (all-phase or per-phase sub-pixel convolution, patches
times kernel or XLA's convolution) and compared, in float32, with the textbook convolution
(`*_reference`) within 1e-5 relative to the scale of the result.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax.errors import PorejaxError
from porejax.models import Generator, ModelConfig, init_variables
from porejax.nn import layers, matmul_conv

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


@pytest.fixture(params=["im2col", "slabs"])
def conv_path(request, monkeypatch):
    """The products in one piece, or in slabs of one output row each (as large generation tiles are made)."""
    if request.param == "slabs":
        monkeypatch.setattr(matmul_conv, "IM2COL_MAX_BYTES", 0)
        monkeypatch.setattr(matmul_conv, "SLAB_BYTES", 1)
    return request.param


def _arrays(shape, kernel, seed):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=shape).astype(np.float32)),
        jnp.asarray(0.3 * rng.normal(size=kernel).astype(np.float32)),
    )


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


def test_paper_shaped_layers_take_the_matrix_product_path(monkeypatch):
    """The generator's 2x-upsampling layers use the all-phase form and patches; values and gradients agree."""
    monkeypatch.setenv(layers.CONV_ENV, "matmul")  # the CPU default, forced so that the test holds on any backend
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
        monkeypatch.setattr(matmul_conv, "WIDE_PRODUCT", 1)
    else:
        monkeypatch.setattr(matmul_conv, "WIDE_PRODUCT", 1 << 30)
        monkeypatch.setattr(matmul_conv, "CONTRACT_BLOCKS", 2)
        monkeypatch.setattr(matmul_conv, "CONTRACT_BLOCK_MIN_ROWS", 1)
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


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (6, 2, 2), (4, 1, 0), (3, 2, 1), (1, 2, 0)])
def test_xla_formulation_equals_matrix_products(k, s, p):
    """The GPU/TPU formulation (XLA's convolutions; transposed by input dilation, circular axes padded
    circularly first) equals the CPU matrix-product one, values and gradients (the matrix products equal
    the textbook forms: the tests above)."""
    x, w = _arrays((2, 6, 5, 7, 3), (k, k, k, 3, 4), 30 + k + s + p)
    _check(
        functools.partial(layers.conv_transpose3d, form="xla"),
        functools.partial(layers.conv_transpose3d, form="matmul"),
        x,
        w,
        s,
        p,
        MODES[1],
    )
    if k > 1:
        _check(
            functools.partial(layers.conv3d, form="xla"),
            functools.partial(layers.conv3d, form="matmul"),
            x,
            w,
            s,
            p,
            MODES[0],
        )


def test_formulation_follows_the_backend_unless_the_environment_overrides_it(monkeypatch):
    x, w = _arrays((1, 4, 4, 4, 2), (4, 4, 4, 2, 3), 40)
    monkeypatch.delenv(layers.CONV_ENV, raising=False)
    assert layers.conv_formulation() == ("matmul" if jax.default_backend() == "cpu" else "xla")
    monkeypatch.setenv(layers.CONV_ENV, "xla")
    assert layers.conv_formulation() == "xla" and layers.conv_formulation("matmul") == "matmul"
    jaxpr = str(jax.make_jaxpr(lambda x, w: layers.conv_transpose3d(x, w, 2, 1))(x, w))
    assert "lhs_dilation=(2, 2, 2)" in jaxpr and "custom_vjp_call" not in jaxpr
    assert layers.prepare_transpose_kernel(w, 2, 1).shape == w.shape
    monkeypatch.setenv(layers.CONV_ENV, "cudnn")
    with pytest.raises(PorejaxError, match="POREJAX_CONV=matmul"):
        layers.conv_formulation()


def test_generator_output_is_the_same_in_both_formulations(monkeypatch):
    """A generator applied with each formulation's prepared kernels (the sub-pixel form for matmul, the
    kernel itself for xla) gives the same probabilities."""
    config = ModelConfig(n_phases=3, latent_channels=4, g_widths=(8, 4), d_widths=(4, 8))
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 2, 2, 2, 4))
    outputs = []
    for form in layers.FORMULATIONS:
        monkeypatch.setenv(layers.CONV_ENV, form)
        prepared = {
            f"deconv{i}": {
                "kernel": layers.prepare_transpose_kernel(g_vars["params"][f"deconv{i}"]["kernel"], stride, pad)
            }
            for i, (_, kernel, stride, pad) in enumerate(config.generator_layers)
            if kernel % stride == 0
        }
        variables = {**g_vars, layers.PREPARED: prepared}
        outputs.append(jax.jit(lambda v, z: Generator(config).apply(v, z, periodic=(True, False, True)))(variables, z))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5, rtol=0)


def test_operands_of_the_wrong_rank_or_channel_count_are_refused_at_trace_time():
    x, w = _arrays((1, 4, 4, 4, 2), (4, 4, 4, 3, 3), 41)
    for op in (layers.conv3d, layers.conv_transpose3d):
        with pytest.raises(AssertionError, match="on axis '3'"):
            op(x, w, 2, 1)
        with pytest.raises(AssertionError, match="has rank 4"):
            op(x[0], w[..., :2, :], 2, 1)
