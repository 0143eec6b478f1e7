"""Adversarial losses: closed forms of the smoothed BCE, and properties of the gradient penalty."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax import losses


def _closed_form_bce(logit: float, target: float) -> float:
    p = 1 / (1 + np.exp(-logit))
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


def test_discriminator_bce_uses_smoothed_real_label_and_zero_fake_label():
    real, fake = jnp.array([2.0, -1.0, 0.5]), jnp.array([-3.0, 0.0, 1.5])
    expected = np.mean([_closed_form_bce(v, 0.9) for v in real]) + np.mean([_closed_form_bce(v, 0.0) for v in fake])
    np.testing.assert_allclose(losses.bce_discriminator(real, fake), expected, rtol=1e-6)


def test_generator_bce_is_minimal_where_d_outputs_the_real_label():
    # d/dl BCE(l, 0.9) = sigmoid(l) - 0.9: zero at l = log(9), i.e. D(G(z)) = 0.9 (smoothing), not 1
    grad = jax.grad(lambda logit: losses.bce_generator(logit[None], target=0.9))(jnp.log(9.0))
    assert abs(float(grad)) < 1e-6
    np.testing.assert_allclose(
        losses.bce_generator(jnp.array([np.log(9.0)])), _closed_form_bce(np.log(9.0), 0.9), rtol=1e-6
    )


def test_bce_is_finite_for_extreme_logits():
    big = jnp.array([1e4, -1e4])
    assert np.isfinite(float(losses.bce_discriminator(big, big)))


@pytest.mark.parametrize("norm,expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_a_linear_critic(norm, expected):
    # C(x) = <w, x> has gradient w everywhere: penalty = (||w|| - 1)^2, zero for a unit-norm gradient
    key_w, key_x, key_gp = jax.random.split(jax.random.PRNGKey(0), 3)
    w = jax.random.normal(key_w, (4, 4, 4, 3))
    w = norm * w / jnp.linalg.norm(w)
    real, fake = jax.random.normal(key_x, (2, 5, 4, 4, 4, 3))
    gp = losses.gradient_penalty(lambda x: jnp.sum(x * w, axis=(1, 2, 3, 4)), real, fake, key_gp)
    np.testing.assert_allclose(gp, expected, atol=1e-5)


def test_wasserstein_losses_have_the_critic_and_generator_signs():
    real, fake = jnp.array([3.0, 1.0]), jnp.array([-1.0, 0.0])
    assert float(losses.wgan_critic(real, fake)) == pytest.approx(-2.5)  # critic wants real high, fake low
    assert float(losses.wgan_generator(fake)) == pytest.approx(0.5)  # generator wants fake high


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    # D(x) = <w, x> has gradient w at every real sample: the penalty is ||w||^2 whatever the batch
    key_w, key_x = jax.random.split(jax.random.PRNGKey(2))
    w = jax.random.normal(key_w, (4, 4, 4, 3))
    real = jax.random.normal(key_x, (3, 4, 4, 4, 3))
    r1 = losses.r1_penalty(lambda x: jnp.sum(x * w, axis=(1, 2, 3, 4)), real)
    np.testing.assert_allclose(r1, jnp.sum(w**2), rtol=1e-5)
    # a quadratic D(x) = ||x||^2 / 2 has gradient x: the penalty is the mean squared norm of the samples
    r1 = losses.r1_penalty(lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3, 4)), real)
    np.testing.assert_allclose(r1, jnp.mean(jnp.sum(real**2, axis=(1, 2, 3, 4))), rtol=1e-5)
