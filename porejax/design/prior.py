"""The latent prior of a design: how far a latent's entries are from the N(0, 1) statistics the generator
was trained on (the first four moments, each over its sampling standard deviation)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_MOMENTS = ((1, 0.0, 1.0), (2, 1.0, 2.0), (3, 0.0, 15.0), (4, 3.0, 96.0))  # (k, E z^k, Var z^k) for N(0, 1)


def prior_residuals(z: jax.Array) -> jax.Array:
    """(4,) deviations of the first four moments of z's entries from N(0, 1)'s, each over its standard deviation."""
    flat = z.reshape(-1)
    return jnp.stack([(jnp.mean(flat**k) - mean) / math.sqrt(var) for k, mean, var in _MOMENTS])


def prior_penalty(z: jax.Array) -> jax.Array:
    """Sum of squares of `prior_residuals`: 0 when z's moments are N(0, 1)'s."""
    return jnp.sum(prior_residuals(z) ** 2)


def latent_statistics(z) -> dict:
    """Mean, std, skewness and excess kurtosis of the latent's entries, and the prior penalty."""
    flat = np.asarray(z, np.float64).reshape(-1)
    mean, std = flat.mean(), flat.std()
    centred = (flat - mean) / std
    return {
        "mean": float(mean),
        "std": float(std),
        "skewness": float(np.mean(centred**3)),
        "excess_kurtosis": float(np.mean(centred**4) - 3),
        "prior_penalty": float(prior_penalty(jnp.asarray(z))),
    }
