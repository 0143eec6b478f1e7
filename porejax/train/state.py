"""The train state: fields, initialisation, the optimiser, weight averaging, restoring, and the frozen
generator a checkpoint stores.

State (`TrainState`): generator and discriminator params and BatchNorm statistics, both Adam states, the
step, the step RNG key and the data key (raw uint32 keys). Every random draw of step s is a function of
the state at step s, so a run resumed from a checkpoint follows the uninterrupted trajectory exactly.
With slice discriminators d_params / d_stats / d_opt hold {name: ...} over the discriminators (one Adam
state over the tree: Adam is element-wise, so each discriminator has its own moments); "volume+slices"
adds the 3D discriminator as {"volume": ...}.

Frozen generator: each checkpoint stores, besides the train state, the generator (its weights' moving
average with `ema_decay`) with standing statistics (`porejax.standing`) estimated on `standing_batches`
batches of the latents `porejax.latents.statistics_latent` gives for the training latents.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax import checkpoint, slices
from porejax.latents import statistics_latent
from porejax.models import ModelConfig, init_slice_discriminators, init_variables
from porejax.standing import standing_statistics
from porejax.train.config import MIXED, TrainConfig
from porejax.train.judges import VOLUME_KEY


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 ()
    g_params: Any
    g_stats: Any  # generator BatchNorm running statistics
    d_params: Any
    d_stats: Any  # discriminator BatchNorm running statistics ({} without BatchNorm)
    g_opt: Any
    d_opt: Any
    key: jax.Array  # uint32 (2,): split every step
    data_key: jax.Array  # uint32 (2,): fixed; orders strided epochs
    g_ema: Any = None  # moving average of g_params (None without --ema-decay)

    def to_dict(self) -> dict:
        """The fields as a dict, without absent (None) ones: what a checkpoint saves."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with the (resolved) config's hyperparameters, for both networks."""
    return optax.adam(config.lr, b1=config.b1, b2=config.b2)


def init_state(model_config: ModelConfig, config: TrainConfig) -> TrainState:
    """Fresh state from `config.seed` (network init, step key and data key are independent streams)."""
    k_init, k_step, k_data = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    g_vars, d_vars = init_variables(model_config, k_init)
    if config.discriminator != "volume":
        layout = "slices" if config.discriminator == MIXED else config.discriminator
        planes = init_slice_discriminators(model_config, slices.discriminator_keys(layout), jax.random.split(k_init)[1])
        if config.discriminator == MIXED:  # the 3D discriminator beside the slice ones
            planes = {part: {VOLUME_KEY: d_vars[part], **planes[part]} for part in ("params", "batch_stats")}
        d_vars = planes
    tx = optimizer(config)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        g_stats=g_vars["batch_stats"],
        d_params=d_vars["params"],
        d_stats=d_vars["batch_stats"],
        g_opt=tx.init(g_vars["params"]),
        d_opt=tx.init(d_vars["params"]),
        key=k_step,
        data_key=k_data,
        g_ema=g_vars["params"] if config.ema_decay > 0 else None,
    )


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array) -> Any:
    """The moving average after `step` (int, >= 1) updates: rate * ema + (1 - rate) * params, with
    rate = min(decay, (1 + step) / (10 + step)), so early weights fade quickly in short runs."""
    step = jnp.asarray(step, jnp.float32)
    rate = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
    return jax.tree_util.tree_map(lambda e, p: rate * e + (1.0 - rate) * p, ema, params)


def copy(tree: Any) -> Any:
    """Arrays with buffers of their own (a donated state must not hold one buffer twice)."""
    return jax.tree_util.tree_map(jnp.copy, tree)


def start_state(
    model_config: ModelConfig, config: TrainConfig, store: checkpoint.Checkpoints, start_step: int | None, mesh: Mesh
) -> TrainState:
    """A fresh state, or the checkpointed one of `start_step`, replicated over the mesh."""
    replicated = NamedSharding(mesh, PartitionSpec())
    if start_step is None:
        return jax.jit(lambda: init_state(model_config, config), out_shardings=replicated)()
    abstract = jax.eval_shape(lambda: init_state(model_config, config)).to_dict()
    abstract.pop("g_ema", None)
    if "g_ema" in store.state_fields(start_step):
        abstract["g_ema"] = abstract["g_params"]
    target = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
    restored, _ = store.restore("state", target, start_step)
    # a run may start (or stop) averaging on resume: the average then starts from the current weights
    g_ema = restored.pop("g_ema", None)
    if config.ema_decay > 0 and g_ema is None:
        g_ema = copy(restored["g_params"])
    return TrainState(**restored, g_ema=g_ema if config.ema_decay > 0 else None)


def with_generator(state: TrainState, variables: dict, mesh: Mesh) -> TrainState:
    """`state` with the generator `variables` ({"params", "batch_stats"}) of another run (a warm start)."""
    variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
    return dataclasses.replace(
        state,
        g_params=variables["params"],
        g_stats=variables["batch_stats"],
        g_ema=None if state.g_ema is None else copy(variables["params"]),
    )


def frozen_generator(model_config: ModelConfig, state: TrainState, config: TrainConfig, mesh: Mesh) -> dict:
    """Generator variables for generation: params (their moving average with EMA) + standing statistics
    of those params (deterministic in step and seed)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), state.step)
    params = state.g_params if state.g_ema is None else state.g_ema
    side, periodic, batch = statistics_latent(model_config, config.latent, config.batch_size, mesh.size)
    stats = standing_statistics(
        model_config,
        params,
        state.g_stats,
        key,
        side=side,
        periodic=periodic,
        batch=batch,
        batches=config.standing_batches,
        mesh=mesh,
    )
    return {"params": params, "batch_stats": stats}
