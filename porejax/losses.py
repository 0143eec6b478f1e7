"""Adversarial losses, all from discriminator logits / critic scores of shape (B,).

- "bce": the paper's loss (PyTorch DC-GAN with one-sided label smoothing): binary cross-entropy computed
  from logits (numerically stable), real target 0.9, fake target 0; the generator's target is the real
  label (0.9, as in the paper's code).
- "wgan-gp": Wasserstein loss with gradient penalty (Gulrajani et al. 2017), for a critic without
  batch statistics (LayerNorm or no normalisation) so that the penalty is per sample.
- R1 (Mescheder et al. 2018), optional beside "bce": gamma / 2 * E ||grad_x D(x)||^2 on real samples, which
  keeps the discriminator flat around the real data, so that a generator close to it gets small gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

LOSSES = ("bce", "wgan-gp")


def bce(logits: jax.Array, target: float) -> jax.Array:
    """Mean binary cross-entropy of sigmoid(logits) against a constant target, from logits."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, target)))


def bce_discriminator(
    real_logits: jax.Array, fake_logits: jax.Array, real_label: float = 0.9, fake_label: float = 0.0
) -> jax.Array:
    """D loss = BCE(D(x), real_label) + BCE(D(G(z)), fake_label), each a mean over its batch."""
    return bce(real_logits, real_label) + bce(fake_logits, fake_label)


def bce_generator(fake_logits: jax.Array, target: float = 0.9) -> jax.Array:
    """G loss = BCE(D(G(z)), target): the non-saturating loss, target = the real label."""
    return bce(fake_logits, target)


def wgan_critic(real_scores: jax.Array, fake_scores: jax.Array) -> jax.Array:
    """Critic loss without penalty: mean C(G(z)) - mean C(x) (minus the Wasserstein estimate)."""
    return jnp.mean(fake_scores) - jnp.mean(real_scores)


def wgan_generator(fake_scores: jax.Array) -> jax.Array:
    return -jnp.mean(fake_scores)


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
    """mean_b (||grad_x C(x_b)||_2 - 1)^2 at x_b = e_b real_b + (1 - e_b) fake_b, e_b ~ U(0, 1).

    `critic` maps a batch (B, ...) to scores (B,) and must treat samples independently (no batch
    statistics): the gradient of sum_b C(x_b) is then the per-sample gradient.
    """
    eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = eps * real + (1 - eps) * fake
    norms = jnp.sqrt(_squared_input_gradients(critic, mixed) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


def r1_penalty(discriminator: Callable[[jax.Array], jax.Array], real: jax.Array) -> jax.Array:
    """mean_b ||grad_x D(x_b)||_2^2 on real samples x_b (the R1 penalty without its gamma / 2).

    `discriminator` maps a batch (B, ...) to logits (B,); with batch statistics (BatchNorm in training
    mode) the gradient of sum_b D(x_b) mixes the samples, and the penalty is that of the batch function.
    """
    return jnp.mean(_squared_input_gradients(discriminator, real))


def _squared_input_gradients(critic: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """||grad_x sum_b critic(x)_b||^2 per sample (B,)."""
    grads = jax.grad(lambda v: jnp.sum(critic(v)))(x)
    return jnp.sum(grads.reshape(grads.shape[0], -1).astype(jnp.float32) ** 2, axis=1)
