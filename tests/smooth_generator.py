"""A structured fake generator for tests: smooth kernels, so labels have a correlation length.

Shared by the generation and store tests (imported as a plain module: pytest puts `tests/` on the path).
"""

import jax
import jax.numpy as jnp
import numpy as np

from porejax import presets
from porejax.generate import FrozenGenerator
from porejax.models import init_variables
from porejax.volume import PhaseMap

LABELS = (0, 128, 255)
PROFILES = {4: jnp.array([1.0, 3.0, 3.0, 1.0]), 3: jnp.array([1.0, 2.0, 1.0])}


def smooth_generator(config=presets.model("tiny", 3)) -> FrozenGenerator:
    """A generator with structure: smooth (linear-interpolation) kernels with random channel mixing and
    randomised frozen BatchNorm statistics, so that labels have a correlation length of several voxels."""
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    params = {}
    for layer, value in g_vars["params"].items():
        if "kernel" not in value:
            params[layer] = value
            continue
        k, _, _, c_in, c_out = value["kernel"].shape
        profile = PROFILES[k] / (8.0 if layer == "deconv0" else 4.0)
        key, sub = jax.random.split(key)
        mix = jax.random.normal(sub, (c_in, c_out)) * (3.0 / np.sqrt(c_in))
        mix = mix - mix.mean(axis=1, keepdims=True)  # no phase is favoured by the positive ReLU inputs
        smooth = profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
        params[layer] = {"kernel": smooth[..., None, None] * mix}
    stats = jax.tree_util.tree_map(lambda v: v, g_vars["batch_stats"])
    leaves, tree = jax.tree_util.tree_flatten(stats)
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    stats = jax.tree_util.tree_unflatten(
        tree, [jnp.abs(leaf + 0.2 * jax.random.normal(k, leaf.shape)) for leaf, k in zip(leaves, keys)]
    )
    return FrozenGenerator(config, PhaseMap(LABELS, voxel_size=0.5), {"params": params, "batch_stats": stats})
