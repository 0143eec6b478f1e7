"""Latents: drawing them, the latents a generator trains on and those its standing statistics come from.

A latent is a standard-normal float32 array (A, A, A, latent_channels) (a batch: (B, A, A, A, C)), always
drawn flat and reshaped (fast to compile, and the same numbers for the same key whatever the caller).

Training latents ("periodic" or "point"):

- "periodic" (`porejax train`'s default, `TRAINING_DEFAULT`): side crop / period_unit (4^3 for the paper's
  64^3 crops) with circular padding, so every training volume is a window of a stationary, infinitely
  tiled structure: training, the frozen statistics and the interior of every larger generated volume see
  the same activations.
- "point": the paper's 1^3 latent with zero padding; every activation sees only part of a kernel, so a
  volume larger than the training crop is normalised with statistics of another distribution.

A generator's checkpoint records its training latent (`porejax train` writes it). Where none is recorded
(`porejax init`, generators imported from the paper's PyTorch code) the generator is taken to be the
paper's, trained on "point" latents (`UNRECORDED`): the default of `FrozenGenerator.training_latent`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax import programs
from porejax.errors import PorejaxError

LATENTS = ("periodic", "point")
TRAINING_DEFAULT = "periodic"  # what `porejax train` trains on unless told otherwise (TrainConfig.latent)
UNRECORDED = "point"  # what a generator without a recorded training latent was trained on (the paper's 1^3)
# periodic-latent runs estimate the generator's standing statistics on periodic latents this many times the
# training side per axis (experiments/results/cathode/README.md, "BatchNorm statistics")
STATISTICS_SCALE = 2


def draw(key: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard-normal float32 array of `shape`, drawn flat."""
    shape = tuple(int(n) for n in shape)
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


_draw = jax.jit(draw, static_argnames="shape")


def from_seed(seed: int, shape: Sequence[int]) -> np.ndarray:
    """The latent of `shape` (e.g. (A, B, C, latent_channels)) that integer `seed` names, as a numpy array:
    `draw(jax.random.PRNGKey(seed), shape)`, one program kept by `porejax.programs` (no tracing in a
    repeated command)."""
    shape = tuple(int(n) for n in shape)
    return np.asarray(programs.run(_draw, {"shape": shape}, seed_key(seed)))


def seed_key(seed: int) -> np.ndarray:
    """`jax.random.PRNGKey(seed)` as its raw uint32 data. For 0 <= seed < 2^31 under the default threefry
    implementation that is (0, seed), made here without a compiled program; otherwise JAX makes it."""
    seed = int(seed)
    if 0 <= seed < 2**31 and str(jax.config.jax_default_prng_impl) == "threefry2x32":
        return np.array([0, seed], np.uint32)
    return np.asarray(jax.random.key_data(jax.random.PRNGKey(seed)))


def draw_latents(model_config, key: jax.Array, batch: int, side: int) -> jax.Array:
    """Standard-normal latents (batch, side, side, side, latent_channels) float32."""
    return draw(key, (batch, side, side, side, model_config.latent_channels))


def training_latent(model_config, latent: str) -> tuple[int, tuple[bool, bool, bool]]:
    """(latent side, periodic flags) of the latents a generator trains on; both give crop_size^3 volumes."""
    if latent not in LATENTS:
        raise PorejaxError(f"latent must be one of {LATENTS}, got {latent!r}")
    if latent == "periodic":
        return model_config.crop_size // model_config.period_unit, (True, True, True)
    if not model_config.point_latent_crop:
        raise PorejaxError(
            f"point (1^3) latents make {model_config.output_side(1, periodic=False)}^3 volumes but "
            f"this discriminator judges {model_config.crop_size}^3 crops: train with periodic "
            "latents, or give both networks the same number of layers"
        )
    return 1, (False, False, False)


def draw_training_latents(model_config, latent: str, key: jax.Array, batch: int) -> jax.Array:
    """Standard-normal training latents (batch, a, a, a, latent_channels) float32."""
    return draw_latents(model_config, key, batch, training_latent(model_config, latent)[0])


def statistics_latent(
    model_config, latent: str, batch_size: int, devices: int = 1
) -> tuple[int, tuple[bool, bool, bool], int]:
    """(latent side, periodic flags, batch) of the latents the generator's standing statistics come from.

    Point latents: the training latents (the distribution the discriminator judged). Periodic latents:
    STATISTICS_SCALE times the training side, with about the voxels of a training batch of `batch_size`
    (a multiple of `devices`). Generated volumes are larger than the training crops, and on the small
    training torus the deeper layers' activations have other statistics than on larger ones (for the
    cathode generator, statistics from the training side made 64^3 volumes with ~0.02 less NMC than
    statistics from twice that side, which agree with 4x that side).
    """
    side, periodic = training_latent(model_config, latent)
    if latent != "periodic":
        return side, periodic, batch_size
    batch = devices * max(1, batch_size // (STATISTICS_SCALE**3 * devices))
    return STATISTICS_SCALE * side, periodic, batch


def interpolate_latents(z0, z1, steps: int, method: str = "slerp") -> np.ndarray:
    """Latents on the path from z0 to z1 (paper S8): (steps, *z0.shape).

    "slerp" (default) keeps the norm typical of Gaussian latents; "linear" is the straight line.
    """
    z0, z1 = np.asarray(z0, np.float32), np.asarray(z1, np.float32)
    if z0.shape != z1.shape:
        raise PorejaxError(f"latents to interpolate differ in shape: {z0.shape} vs {z1.shape}")
    if steps < 2:
        raise PorejaxError(f"interpolation needs at least 2 steps, got {steps}")
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape((steps,) + (1,) * z0.ndim)
    if method == "linear":
        return (1 - t) * z0 + t * z1
    if method != "slerp":
        raise PorejaxError(f"interpolation method must be 'slerp' or 'linear', got {method!r}")
    cos = float(np.sum(z0 * z1) / (np.linalg.norm(z0) * np.linalg.norm(z1)))
    omega = math.acos(min(1.0, max(-1.0, cos)))
    if omega < 1e-6:
        return (1 - t) * z0 + t * z1
    return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / math.sin(omega)
