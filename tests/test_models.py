"""The paper's networks: parameter counts, shapes, initialisation, presets."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax import presets
from porejax.errors import PorejaxError
from porejax.models import Discriminator, Generator, ModelConfig, count_params, init_variables
from porejax.nn.layers import conv3d, conv_transpose3d


def test_paper_parameter_counts():
    """Table 2 of the paper with bias-free convolutions: G 14,301,056 and D 699,840 parameters."""
    g_vars, d_vars = jax.eval_shape(lambda: init_variables(presets.model("paper", 3), jax.random.PRNGKey(0)))
    conv_g = 100 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 3
    conv_d = 3 * 16 + 16 * 32 + 32 * 64 + 64 * 128 + 128 * 1
    assert count_params(g_vars["params"]) == 64 * conv_g + 2 * (512 + 256 + 128 + 64) == 14_301_056
    assert count_params(d_vars["params"]) == 64 * conv_d + 2 * (32 + 64 + 128) == 699_840


def test_shapes_and_init_statistics():
    config = ModelConfig(n_phases=4, latent_channels=8, g_widths=(16, 8), d_widths=(8, 16))
    assert config.crop_size == 16 and config.period_unit == 4
    g_vars, d_vars = init_variables(config, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 3, 1, 8))
    p = Generator(config).apply(g_vars, z)
    assert p.shape == (2, 20, 24, 16, 4)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert Generator(config).apply(g_vars, z, periodic=(True, False, True)).shape == (2, 8, 24, 4, 4)
    logits = Discriminator(config).apply(d_vars, p[:, :16, :16, :16])
    assert logits.shape == (2,)
    kernel = np.asarray(g_vars["params"]["deconv1"]["kernel"])
    assert abs(kernel.std() - 0.02) < 0.002 and abs(kernel.mean()) < 0.002
    scale = np.asarray(g_vars["params"]["BatchNorm_0"]["scale"])
    assert abs(scale.mean() - 1.0) < 0.01 and 0.005 < scale.std() < 0.04


def test_a_deeper_discriminator_judges_larger_crops_than_a_point_latent_gives():
    config = ModelConfig(n_phases=3, latent_channels=4, g_widths=(8, 4), d_widths=(4, 4, 8))
    assert (config.period_unit, config.crop_size, config.point_latent_crop) == (4, 32, False)
    assert presets.model("paper", 3).point_latent_crop
    g_vars, d_vars = init_variables(config, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 8, 4))  # latent side crop / period_unit
    volume = Generator(config).apply(g_vars, z, periodic=(True, True, True))
    assert volume.shape == (2, 32, 32, 32, 3)
    assert Discriminator(config).apply(d_vars, volume).shape == (2,)


def test_batch_norm_uses_batch_statistics_only_in_training():
    config = presets.model("tiny", 3)
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 1, 1, config.latent_channels))
    p, updates = Generator(config).apply(g_vars, z, train=True, mutable=["batch_stats"])
    changed = jax.tree_util.tree_map(
        lambda a, b: float(jnp.abs(a - b).max()), g_vars["batch_stats"], updates["batch_stats"]
    )
    assert max(jax.tree_util.tree_leaves(changed)) > 0
    single = Generator(config).apply(g_vars, z[:1])
    np.testing.assert_allclose(Generator(config).apply(g_vars, z)[:1], single, atol=1e-6)


def test_config_validation():
    with pytest.raises(PorejaxError, match="at least as many"):
        ModelConfig(g_widths=(8, 8), d_widths=(8,))
    with pytest.raises(PorejaxError, match="unknown preset"):
        presets.model("huge", 3)
    with pytest.raises(PorejaxError, match="d_norm"):
        ModelConfig(d_norm="group")
    assert ModelConfig.from_dict(presets.model("cpu", 5).to_dict()) == presets.model("cpu", 5)


def test_mixed_precision_keeps_float32_weights_and_outputs_close_to_float32():
    config = presets.model("tiny", 3)
    mixed = dataclasses.replace(config, compute_dtype="bfloat16")
    g_vars, d_vars = init_variables(config, jax.random.PRNGKey(0))
    assert init_variables(mixed, jax.random.PRNGKey(0))[0]["params"]["deconv0"]["kernel"].dtype == jnp.float32
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 4, config.latent_channels))  # -> 32^3 = crop
    p32, p16 = (Generator(c).apply(g_vars, z, periodic=(True,) * 3) for c in (config, mixed))
    assert p16.dtype == jnp.float32 and p16.shape == p32.shape
    assert 0 < float(jnp.max(jnp.abs(p16 - p32))) < 0.05  # bfloat16 products: ~3 significant digits
    x = jax.nn.one_hot(jnp.argmax(p32, -1), 3)
    l32, l16 = (Discriminator(c).apply(d_vars, x) for c in (config, mixed))
    np.testing.assert_allclose(l16, l32, rtol=0.05, atol=0.05)
    grads = jax.grad(lambda v: Discriminator(mixed).apply(v, x).sum())(d_vars)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))


def test_mixed_precision_keeps_the_layers_next_to_the_probabilities_float32():
    """With bfloat16 products, the generator's logits layer and the discriminator's first layer still compute
    exactly what the float32 layer does; a bfloat16 first layer could not tell 0.999 from 0.998."""
    mixed = dataclasses.replace(presets.model("tiny", 3), compute_dtype="bfloat16")
    g_vars, d_vars = init_variables(mixed, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 1, mixed.latent_channels))
    _, seen = Generator(mixed).apply(g_vars, z, capture_intermediates=True)
    last = len(mixed.generator_layers) - 1
    _, _, stride, pad = mixed.generator_layers[last]
    before = jax.nn.relu(seen["intermediates"][f"BatchNorm_{last - 1}"]["__call__"][0])
    logits = conv_transpose3d(before, g_vars["params"][f"deconv{last}"]["kernel"], stride, pad)
    np.testing.assert_array_equal(seen["intermediates"][f"deconv{last}"]["__call__"][0], logits)
    almost_one_hot = jnp.zeros((2, mixed.crop_size, mixed.crop_size, mixed.crop_size, 3)).at[..., 0].set(1.0)
    x = almost_one_hot * jnp.array([0.999, 0.998])[:, None, None, None, None]  # equal in bfloat16
    _, seen = Discriminator(mixed).apply(d_vars, x, capture_intermediates=True)
    first = seen["intermediates"]["conv0"]["__call__"][0]
    np.testing.assert_array_equal(first, conv3d(x, d_vars["params"]["conv0"]["kernel"], 2, 1))
    assert not np.array_equal(first[0], first[1])
