"""Standing statistics: one estimator for training and for re-estimating a frozen generator's statistics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from porejax import latents, standing, train
from porejax.generate import FrozenGenerator
from porejax.models import Generator, ModelConfig, init_variables
from porejax.volume import PhaseMap

MICRO = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4,))  # 8^3 crops, period unit 2: training side 4


def test_standing_statistics_average_the_batch_statistics_of_the_documented_latents():
    g_vars, _ = init_variables(MICRO, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    found = standing.standing_statistics(MICRO, g_vars["params"], g_vars["batch_stats"], key, batch=2, batches=3)
    # by hand: periodic latents of twice the training side (8), drawn from the split key, one pass each
    per_batch = []
    for k in jax.random.split(key, 3):
        z = latents.draw_latents(MICRO, k, 2, 8)
        _, upd = Generator(MICRO).apply(g_vars, z, train=True, periodic=(True,) * 3, mutable=["batch_stats"])
        bn = upd["batch_stats"]  # running = 0.9 * initial + 0.1 * batch statistic
        init = g_vars["batch_stats"]
        per_batch.append(jax.tree_util.tree_map(lambda r, i: (r - 0.9 * i) / 0.1, bn, init))
    expected = jax.tree_util.tree_map(lambda *v: np.mean(np.stack(v), 0), *per_batch)
    chex.assert_trees_all_close(found, expected, rtol=1e-4, atol=1e-5)
    # a data-parallel mesh (tests/conftest.py fakes two CPU devices) gives the same statistics
    on_mesh = standing.standing_statistics(
        MICRO, g_vars["params"], g_vars["batch_stats"], key, batch=2, batches=3, mesh=train.make_mesh()
    )
    chex.assert_trees_all_close(on_mesh, found, rtol=1e-5, atol=1e-6)


def test_a_frozen_generator_re_estimates_with_the_same_estimator_and_defaults():
    g_vars, _ = init_variables(MICRO, jax.random.PRNGKey(0))
    gen = FrozenGenerator(MICRO, PhaseMap((0, 1, 2)), g_vars)
    again = gen.with_stationary_statistics(batches=2, seed=3).variables["batch_stats"]
    side = latents.statistics_latent(MICRO, "periodic", 1)[0]
    assert side == 2 * MICRO.crop_size // MICRO.period_unit
    expected = standing.standing_statistics(
        MICRO, g_vars["params"], g_vars["batch_stats"], jax.random.PRNGKey(3), side=side, batch=1, batches=2
    )
    chex.assert_trees_all_equal(again, expected)
    assert all(float(jnp.min(v["var"])) > 0 for v in again.values())
