"""Standing statistics: the BatchNorm means and variances a generator normalises with at generation time.

One estimator for training (the statistics every checkpoint stores) and for re-estimating them on a
frozen generator (`FrozenGenerator.with_stationary_statistics`): run the generator in training mode on
`batches` batches of `batch` standard-normal latents (batch, side, side, side, latent_channels) and
average the per-batch statistics ({"mean", "var"} per BatchNorm layer, each (channels,)). They are exactly
the statistics the generator normalises with in training mode on such latents, at the given weights
(running averages lag behind the weights by ~1 / (1 - momentum) updates).

Which latents: by default periodic latents of side STATISTICS_SCALE x the training side
(`porejax.latents.statistics_latent`), `BATCHES` batches of one. Periodic latents have no boundary, so
their statistics are those of the stationary (infinite) structure that large and periodic volumes are made
of; twice the training side, because on the small training torus the deeper layers' activations differ
from those of larger volumes (experiments/results/cathode/README.md, "BatchNorm statistics"). Training on
the paper's 1^3 point latents passes its own training latents instead (zero padding), the distribution
the discriminator judged.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax.latents import draw_latents, statistics_latent
from porejax.models import ModelConfig, generator_batch_statistics

BATCHES = 16  # default number of batches (of one latent each)


@functools.lru_cache(maxsize=8)
def _estimator(
    model_config: ModelConfig, side: int, periodic: tuple[bool, ...], batch: int, batches: int, mesh: Mesh | None
):
    """The jitted (params, batch_stats, key) -> statistics; with a mesh the latents are sharded along "data"
    and the result is replicated."""

    def one_batch(params, stats, key):
        z = draw_latents(model_config, key, batch, side)
        if mesh is not None:
            z = jax.lax.with_sharding_constraint(z, NamedSharding(mesh, PartitionSpec("data")))
        return generator_batch_statistics(model_config, params, stats, z, periodic)

    def standing(params, stats, key):
        per_batch = jax.lax.map(lambda k: one_batch(params, stats, k), jax.random.split(key, batches))
        return jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), per_batch)

    return jax.jit(standing, out_shardings=None if mesh is None else NamedSharding(mesh, PartitionSpec()))


def standing_statistics(
    model_config: ModelConfig,
    params: Any,
    batch_stats: Any,
    key: jax.Array,
    *,
    side: int | None = None,
    periodic: Sequence[bool] = (True, True, True),
    batch: int = 1,
    batches: int = BATCHES,
    mesh: Mesh | None = None,
) -> Any:
    """Generator BatchNorm statistics averaged over `batches` training-mode batches of `batch` latents of side
    `side` (default: the periodic statistics side, `statistics_latent`) with circular padding on the
    `periodic` axes. Deterministic in `key`; returns a tree like `batch_stats`."""
    if side is None:
        side = statistics_latent(model_config, "periodic", batch)[0]
    estimate = _estimator(model_config, int(side), tuple(bool(p) for p in periodic), int(batch), int(batches), mesh)
    return estimate(params, batch_stats, key)
