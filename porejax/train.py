"""Training: explicit state, one jitted function per step, data parallel, resumable, observable.

The paper's recipe is the default (Gayon-Lombardo et al. 2020, after PyTorch's DC-GAN): Adam (lr 2e-5,
b1 0.5, b2 0.999) for both networks, binary cross-entropy from logits with one-sided label smoothing
(real 0.9, fake 0, generator target 0.9), k = 2 generator updates per discriminator update, and real and
fake batches passed through D separately (BatchNorm batch statistics per pass).

One step (`--loss bce`) = one discriminator update followed by its k generator updates; with
`--loss wgan-gp` (Gulrajani et al. 2017; critic without batch statistics, lambda 10, Adam lr 1e-4,
b1 0, b2 0.9) one step = n_critic (5) critic updates followed by one generator update. Either way the
whole step, including the sampling of its real crops (see `porejax.dataset`), is a single jitted
function with no host round trip: the sub-updates are a fully unrolled `lax.scan` (a rolled scan, i.e. a
while loop, made XLA's CPU convolutions 2.3x slower at 64^3 and 25x slower at the paper's widths).

State (`TrainState`): generator and discriminator params and BatchNorm statistics, both Adam states, the
step, the step RNG key and the data key (raw uint32 keys). Every random draw of step s is a function of
the state at step s, so a run resumed from a checkpoint follows the uninterrupted trajectory exactly.

Data parallel: a `Mesh` over all devices with one axis "data"; params are replicated and every batch
(real crops, latents) is constrained to be sharded along "data", so XLA splits the convolutions by
sample and all-reduces gradients and BatchNorm statistics: the losses equal the single-device ones for
the same global batch. Multi-process (several hosts, or one process per GPU): `porejax train` joins the
run (`porejax.cli.initialize_distributed`) before anything else, and the mesh spans the devices of all
processes. Every process reads the same training volumes and draws the same crop origins and latents
(cheap: a few numbers per crop); each device then cuts and encodes only the crops of its own share of
the batch (`shard_map` over "data"), so a batch is sampled once across the processes and equals the
single-device batch exactly. Only process 0 logs, writes images and the metadata; checkpoints are
written through orbax, which stores each replicated array once.

Training latents (`latent`): "periodic" (default) draws latents of side crop / period_unit (4^3 for the
paper's 64^3 crops) and runs the generator with circular padding, so every training volume is a window
of a stationary, infinitely tiled structure; "point" is the paper's 1^3 latent with zero padding. With
point latents every activation sees only part of a kernel, so BatchNorm statistics learnt on them
mis-normalise the interior of any larger volume and its phase fractions drift (measured on the cathode:
64^3 periodic volumes at volume fractions 0.007/0.814/0.180 for a real 0.45/0.40/0.15); with periodic
latents training, the frozen statistics and the interior of every generated volume see the same
activations, at the same cost per step.

Frozen generator statistics: each checkpoint stores, besides the train state, the generator with
"standing statistics": its BatchNorm means and variances re-estimated by running it in training mode on
`standing_batches` batches of training latents and averaging the per-batch statistics. They are exactly
the statistics the generator normalises with during training (the distribution D judged), at the
current weights; running averages lag behind the weights by ~1 / (1 - momentum) updates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax import checkpoint, dataset, losses, metrics, slices
from porejax.errors import PorejaxError
from porejax.lock import workdir_lock
from porejax.models import (
    Discriminator,
    Generator,
    ModelConfig,
    generator_batch_statistics,
    init_slice_discriminators,
    init_variables,
)
from porejax.volume import PhaseMap

LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
REAL_EVAL_CROPS = 32  # real crops the quick evaluation compares against (drawn once per run)
_ADAM_DEFAULTS = {"bce": (2e-5, 0.5, 0.999), "wgan-gp": (1e-4, 0.0, 0.9)}
LATENTS = ("periodic", "point")
DISCRIMINATORS = ("volume",) + slices.LAYOUTS
# periodic-latent runs estimate the generator's standing statistics on periodic latents this many times the
# training side per axis (experiments/results/cathode/README.md, "BatchNorm statistics")
STATISTICS_SCALE = 2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train. Recipe fields fix the trajectory; cadence fields (`CADENCE`) may change on resume."""

    batch_size: int = 32
    loss: str = "bce"
    lr: float | None = None  # None: the loss's default (bce 2e-5, wgan-gp 1e-4)
    b1: float | None = None  # None: bce 0.5, wgan-gp 0.0
    b2: float | None = None  # None: bce 0.999, wgan-gp 0.9
    g_updates: int = 2  # bce: generator updates per discriminator update (k)
    n_critic: int = 5  # wgan-gp: critic updates per generator update
    gp_weight: float = 10.0  # wgan-gp: lambda
    real_label: float = 0.9  # bce: D's target for real crops (one-sided label smoothing)
    fake_label: float = 0.0  # bce: D's target for generated crops
    g_target: float = 0.9  # bce: G's target for D(G(z)) (the paper's code uses the real label)
    latent: str = "periodic"  # training latents: "periodic" (crop-sized, circular) or "point" (paper: 1^3)
    sampling: str = "random"  # "random" or "strided" (the paper's epochs)
    stride: int = 8  # strided sampling: grid spacing in voxels
    augment: bool = False  # random cube symmetries (flips, 90-degree rotations) of real crops
    holdout: int = 0  # slices held out at the end of x of every volume (never trained on)
    seed: int = 0
    steps: int = 1000  # total steps; a resumed run continues up to it
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_every: int = 0  # also keep the checkpoints of steps that are multiples of this (0: the 3 newest only)
    eval_samples: int = 8  # generated volumes per quick evaluation
    standing_batches: int = 32  # batches of latents for the generator's standing statistics
    ema_decay: float = 0.0  # > 0: generate from an exponential moving average of the generator's weights
    discriminator: str = "volume"  # "volume" (3D crops), "slices" (2D, one per axis) or "shared-slices" (2D, one)
    slices_per_volume: int = 0  # slice discriminators: random slices per generated volume and axis (0: all)

    def __post_init__(self):
        if self.loss not in losses.LOSSES:
            raise PorejaxError(f"unknown loss {self.loss!r}: choose one of {', '.join(losses.LOSSES)}")
        for name in (
            "batch_size",
            "g_updates",
            "n_critic",
            "steps",
            "log_every",
            "eval_every",
            "checkpoint_every",
            "eval_samples",
            "standing_batches",
        ):
            if int(getattr(self, name)) < 1:
                raise PorejaxError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.keep_every < 0:
            raise PorejaxError(
                f"keep-every must be 0 (keep only the newest checkpoints) or positive, got {self.keep_every}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise PorejaxError(f"ema-decay must be in [0, 1) (0: no average; typical 0.999), got {self.ema_decay}")
        if self.lr is not None and not self.lr > 0:
            raise PorejaxError(f"learning rate must be positive, got {self.lr}")
        if self.latent not in LATENTS:
            raise PorejaxError(f"latent must be one of {LATENTS}, got {self.latent!r}")
        if self.sampling not in dataset.MODES:
            raise PorejaxError(f"sampling must be one of {dataset.MODES}, got {self.sampling!r}")
        if self.discriminator not in DISCRIMINATORS:
            raise PorejaxError(f"discriminator must be one of {DISCRIMINATORS}, got {self.discriminator!r}")
        if self.slices_per_volume < 0:
            raise PorejaxError(f"slices-per-volume must be 0 (all) or positive, got {self.slices_per_volume}")

    def resolved(self) -> TrainConfig:
        """This config with the loss's default Adam hyperparameters filled in."""
        lr, b1, b2 = _ADAM_DEFAULTS[self.loss]
        return dataclasses.replace(
            self,
            lr=lr if self.lr is None else self.lr,
            b1=b1 if self.b1 is None else self.b1,
            b2=b2 if self.b2 is None else self.b2,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CADENCE = ("steps", "log_every", "eval_every", "checkpoint_every", "keep_every", "eval_samples", "standing_batches")
# recipe fields a resumed run may change; porejax.json records each one's values as "<name>_history"
RESUME_MAY_CHANGE = ("lr", "ema_decay")


def training_latent(model_config: ModelConfig, latent: str) -> tuple[int, tuple[bool, bool, bool]]:
    """(latent side, periodic flags) of the latents a generator trains on; both give crop_size^3 volumes."""
    if latent == "periodic":
        return model_config.crop_size // model_config.period_unit, (True, True, True)
    if not model_config.point_latent_crop:
        raise PorejaxError(
            f"point (1^3) latents make {model_config.output_side(1, periodic=False)}^3 volumes but "
            f"this discriminator judges {model_config.crop_size}^3 crops: train with periodic "
            "latents, or give both networks the same number of layers"
        )
    return 1, (False, False, False)


def statistics_latent(
    model_config: ModelConfig, latent: str, batch_size: int, devices: int = 1
) -> tuple[int, tuple[bool, bool, bool], int]:
    """(latent side, periodic flags, batch) of the latents the generator's standing statistics come from.

    Point latents: the training latents. Periodic latents: STATISTICS_SCALE times the training side, with
    about the voxels of a training batch (a multiple of `devices`). Generated volumes are larger than the
    training crops, and on the small training torus the deeper layers' activations have other statistics
    than on larger ones (for the cathode generator, statistics from the training side made 64^3 volumes
    with ~0.02 less NMC than statistics from twice that side, which agree with 4x that side).
    """
    side, periodic = training_latent(model_config, latent)
    if latent != "periodic":
        return side, periodic, batch_size
    batch = devices * max(1, batch_size // (STATISTICS_SCALE**3 * devices))
    return STATISTICS_SCALE * side, periodic, batch


def draw_latents(model_config: ModelConfig, key: jax.Array, batch: int, side: int) -> jax.Array:
    """Standard-normal latents (batch, side, side, side, latent_channels) float32 (drawn flat: fast to compile)."""
    shape = (batch, side, side, side, model_config.latent_channels)
    return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def draw_training_latents(model_config: ModelConfig, latent: str, key: jax.Array, batch: int) -> jax.Array:
    """Standard-normal training latents (batch, a, a, a, latent_channels) float32."""
    return draw_latents(model_config, key, batch, training_latent(model_config, latent)[0])


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


# --- devices --------------------------------------------------------------------------------------
def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ("data") mesh over `devices` (default: all devices of all processes)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), ("data",))


def _replicate(tree: Any, mesh: Mesh) -> Any:
    """Host arrays -> global arrays replicated on every device of the mesh (works across hosts)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx: np.asarray(a)[idx]), tree
    )


# --- the step -------------------------------------------------------------------------------------
def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(config.lr, b1=config.b1, b2=config.b2)


def init_state(model_config: ModelConfig, config: TrainConfig) -> TrainState:
    """Fresh state from `config.seed` (network init, step key and data key are independent streams)."""
    k_init, k_step, k_data = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    g_vars, d_vars = init_variables(model_config, k_init)
    if config.discriminator != "volume":
        d_vars = init_slice_discriminators(
            model_config, slices.discriminator_keys(config.discriminator), jax.random.split(k_init)[1]
        )
    tx = _optimizer(config)
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


def _apply_g(
    model_config: ModelConfig, periodic: tuple[bool, ...], params: Any, stats: Any, z: jax.Array
) -> tuple[jax.Array, Any]:
    """Generator in training mode (batch statistics): (probabilities, updated running statistics)."""
    out, upd = Generator(model_config).apply(
        {"params": params, "batch_stats": stats}, z, train=True, periodic=periodic, mutable=["batch_stats"]
    )
    return out, upd["batch_stats"]


def _apply_d(model_config: ModelConfig, params: Any, stats: Any, x: jax.Array) -> tuple[jax.Array, Any]:
    """Discriminator in training mode: (logits (B,), updated running statistics)."""
    out, upd = Discriminator(model_config).apply(
        {"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
    )
    return out, upd.get("batch_stats", stats)


def generator_update(
    model_config: ModelConfig,
    periodic: tuple[bool, ...],
    tx: optax.GradientTransformation,
    g_loss,
    d_params: Any,
    carry: tuple,
    z: jax.Array,
) -> tuple[tuple, tuple]:
    """One generator update against a fixed discriminator.

    carry = (g_params, g_stats, g_opt, d_stats); returns (new carry, (loss before the update, D's scores)).
    `g_loss` maps D's logits / critic scores (B,) to the scalar loss.
    """
    g_params, g_stats, g_opt, d_stats = carry

    def loss_fn(params):
        fake, new_g = _apply_g(model_config, periodic, params, g_stats, z)
        scores, new_d = _apply_d(model_config, d_params, d_stats, fake)
        return g_loss(scores), (new_g, new_d, scores)

    (loss, (g_stats, d_stats, scores)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_params)
    updates, g_opt = tx.update(grads, g_opt, g_params)
    return (optax.apply_updates(g_params, updates), g_stats, g_opt, d_stats), (loss, scores)


def _step_fn(model_config: ModelConfig, config: TrainConfig, spec: dataset.CropSpec, mesh: Mesh):
    """The pure step (state, data arrays) -> (state, metrics) for the configured loss."""
    tx = _optimizer(config)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    b = config.batch_size
    _, periodic = training_latent(model_config, config.latent)
    gen = functools.partial(_apply_g, model_config, periodic)
    disc = functools.partial(_apply_d, model_config)

    def latent(key):
        return jax.lax.with_sharding_constraint(draw_training_latents(model_config, config.latent, key, b), batch)

    def crops(arrays, origins, keys):  # per device: its share of the batch
        return dataset.crops_at(arrays, spec, origins, keys)

    cut = jax.shard_map(
        crops,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("data"), PartitionSpec("data")),
        out_specs=PartitionSpec("data"),
    )

    def real_batch(arrays, key, data_key, index):
        return cut(arrays, *dataset.batch_draws(arrays, spec, key, data_key, index))

    def g_update(g_loss, d_params, carry, key):
        return generator_update(model_config, periodic, tx, g_loss, d_params, carry, latent(key))

    def bce_step(state: TrainState, arrays: dict):
        key, k_real, k_z, k_g = jax.random.split(state.key, 4)
        real = real_batch(arrays, k_real, state.data_key, state.step)
        fake, g_stats = gen(state.g_params, state.g_stats, latent(k_z))
        fake = jax.lax.stop_gradient(fake)

        def d_loss(params):
            real_logits, stats = disc(params, state.d_stats, real)
            fake_logits, stats = disc(params, stats, fake)
            loss = losses.bce_discriminator(real_logits, fake_logits, config.real_label, config.fake_label)
            return loss, (stats, real_logits, fake_logits)

        (loss_d, (d_stats, real_logits, fake_logits)), grads = jax.value_and_grad(d_loss, has_aux=True)(state.d_params)
        updates, d_opt = tx.update(grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, updates)
        g_loss = functools.partial(losses.bce_generator, target=config.g_target)
        (g_params, g_stats, g_opt, d_stats), (loss_g, scores) = jax.lax.scan(
            functools.partial(g_update, g_loss, d_params),
            (state.g_params, g_stats, state.g_opt, d_stats),
            jax.random.split(k_g, config.g_updates),
            unroll=True,
        )
        metrics = {
            "loss_d": loss_d,
            "loss_g": loss_g[-1],
            "d_real": jnp.mean(jax.nn.sigmoid(real_logits)),
            "d_fake": jnp.mean(jax.nn.sigmoid(fake_logits)),
            "d_fake_g": jnp.mean(jax.nn.sigmoid(scores[-1])),
        }
        return state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_stats=g_stats,
            d_params=d_params,
            d_stats=d_stats,
            g_opt=g_opt,
            d_opt=d_opt,
            key=key,
        ), metrics

    def wgan_step(state: TrainState, arrays: dict):
        key, k_critic, k_g = jax.random.split(state.key, 3)

        def critic_update(carry, inputs):
            d_params, d_opt, g_stats = carry
            k, index = inputs
            k_real, k_z, k_gp = jax.random.split(k, 3)
            real = real_batch(arrays, k_real, state.data_key, index)
            fake, g_stats = gen(state.g_params, g_stats, latent(k_z))
            fake = jax.lax.stop_gradient(fake)

            def c_loss(params):
                critic = lambda x: disc(params, state.d_stats, x)[0]  # noqa: E731
                real_scores, fake_scores = critic(real), critic(fake)
                gp = losses.gradient_penalty(critic, real, fake, k_gp)
                return losses.wgan_critic(real_scores, fake_scores) + config.gp_weight * gp, (
                    real_scores,
                    fake_scores,
                    gp,
                )

            (loss, aux), grads = jax.value_and_grad(c_loss, has_aux=True)(d_params)
            updates, d_opt = tx.update(grads, d_opt, d_params)
            return (optax.apply_updates(d_params, updates), d_opt, g_stats), (loss,) + aux

        indices = state.step * config.n_critic + jnp.arange(config.n_critic)
        (d_params, d_opt, g_stats), (loss_d, real_scores, fake_scores, gp) = jax.lax.scan(
            critic_update,
            (state.d_params, state.d_opt, state.g_stats),
            (jax.random.split(k_critic, config.n_critic), indices),
            unroll=True,
        )
        (g_params, g_stats, g_opt, _), (loss_g, scores) = g_update(
            losses.wgan_generator, d_params, (state.g_params, g_stats, state.g_opt, state.d_stats), k_g
        )
        metrics = {
            "loss_d": loss_d[-1],
            "loss_g": loss_g,
            "d_real": jnp.mean(real_scores[-1]),
            "d_fake": jnp.mean(fake_scores[-1]),
            "d_fake_g": jnp.mean(scores),
            "gp": gp[-1],
        }
        return state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_stats=g_stats,
            d_params=d_params,
            d_opt=d_opt,
            g_opt=g_opt,
            key=key,
        ), metrics

    if config.discriminator != "volume":
        from porejax import train_slices  # it builds on this module

        step = train_slices.step_fn(model_config, config, spec, mesh)
    else:
        step = bce_step if config.loss == "bce" else wgan_step
    if config.ema_decay == 0:
        return step

    def averaged_step(state: TrainState, arrays: dict):
        state, metrics = step(state, arrays)
        return state.replace(g_ema=ema_update(state.g_ema, state.g_params, config.ema_decay, state.step)), metrics

    return averaged_step


def _recipe(config: TrainConfig) -> TrainConfig:
    """The config with cadence fields reset: two configs with the same recipe compile the same step."""
    return dataclasses.replace(config, **{f: getattr(TrainConfig, f) for f in CADENCE})


@functools.lru_cache(maxsize=16)
def _jitted_step(model_config: ModelConfig, recipe: TrainConfig, spec: dataset.CropSpec, mesh: Mesh):
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(_step_fn(model_config, recipe, spec, mesh), out_shardings=replicated, donate_argnums=0)


def make_step(model_config: ModelConfig, config: TrainConfig, spec: dataset.CropSpec, mesh: Mesh):
    """The jitted step (state, data arrays) -> (state, metrics); state is donated. Cached per recipe."""
    return _jitted_step(model_config, _recipe(config.resolved()), spec, mesh)


def compile_step(
    model_config: ModelConfig, config: TrainConfig, spec: dataset.CropSpec, mesh: Mesh, state: TrainState, arrays: dict
):
    """The step compiled ahead of time for these state and data arrays: (state, arrays) -> (state, metrics)."""
    return make_step(model_config, config, spec, mesh).lower(state, arrays).compile()


@functools.lru_cache(maxsize=8)
def _standing_fn(model_config: ModelConfig, latent: str, batches: int, batch_size: int, mesh: Mesh):
    batch = NamedSharding(mesh, PartitionSpec("data"))
    side, periodic, size = statistics_latent(model_config, latent, batch_size, mesh.size)

    def one_batch(params, stats, key):
        z = jax.lax.with_sharding_constraint(draw_latents(model_config, key, size, side), batch)
        return generator_batch_statistics(model_config, params, stats, z, periodic)

    def standing(params, stats, key):
        per_batch = jax.lax.map(lambda k: one_batch(params, stats, k), jax.random.split(key, batches))
        return jax.tree_util.tree_map(lambda s: jnp.mean(s, axis=0), per_batch)

    return jax.jit(standing, out_shardings=NamedSharding(mesh, PartitionSpec()))


def standing_statistics(
    model_config: ModelConfig,
    g_params: Any,
    g_stats: Any,
    key: jax.Array,
    batches: int,
    batch_size: int,
    mesh: Mesh,
    latent: str = "periodic",
) -> Any:
    """Generator BatchNorm statistics averaged over `batches` training-mode batches of the latents
    `statistics_latent` gives for training latents `latent` and `batch_size`.

    Returns a tree like `g_stats` ({"mean", "var"} per BatchNorm layer).
    """
    return _standing_fn(model_config, latent, int(batches), int(batch_size), mesh)(g_params, g_stats, key)


def frozen_generator(model_config: ModelConfig, state: TrainState, config: TrainConfig, mesh: Mesh) -> dict:
    """Generator variables for generation: params (their moving average with EMA) + standing statistics
    of those params (deterministic in step and seed)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), state.step)
    params = state.g_params if state.g_ema is None else state.g_ema
    stats = standing_statistics(
        model_config, params, state.g_stats, key, config.standing_batches, config.batch_size, mesh, config.latent
    )
    return {"params": params, "batch_stats": stats}


# --- data bookkeeping -----------------------------------------------------------------------------
def data_fingerprint(volumes: Sequence[np.ndarray], sources: Sequence[str] | None = None) -> list[dict]:
    """Per volume: sha256 of its bytes (C order), shape, dtype, label values and (optional) source name."""
    out = []
    for i, volume in enumerate(volumes):
        volume = np.ascontiguousarray(volume)
        out.append(
            {
                "source": None if sources is None else str(sources[i]),
                "sha256": hashlib.sha256(volume.tobytes()).hexdigest(),
                "shape": list(volume.shape),
                "dtype": str(volume.dtype),
                "labels": [int(v) for v in np.unique(volume)],
            }
        )
    return out


def _same_data(a: dict, b: dict) -> bool:
    def content(record):
        keys = ("sha256", "shape", "labels")
        images = record.get("slices", {}).get("images", {})
        return (
            [{k: v[k] for k in keys} for v in record["volumes"]],
            record.get("holdout"),
            record.get("slices", {}).get("discriminators"),
            {name: [{k: v[k] for k in keys} for v in found] for name, found in images.items()},
        )

    return content(a) == content(b)


def _training_data(
    volumes: Sequence[np.ndarray],
    images: slices.ImageSets | None,
    phase_map: PhaseMap,
    model_config: ModelConfig,
    config: TrainConfig,
    sources,
) -> tuple[Any, dict, str, dict]:
    """(sampling spec, host arrays the step samples from, a description, the data record of porejax.json)."""
    holdout = {
        "axis": "x",
        "slices": config.holdout,
        "regions": [[int(v.shape[0]) - config.holdout, int(v.shape[0])] for v in volumes],
    }
    train_parts = [dataset.split_holdout(v, config.holdout, axis=0)[0] for v in volumes]
    if config.discriminator == "volume":
        if images is not None:
            raise PorejaxError(
                "2D images train slice discriminators: use --discriminator slices (an image per "
                "axis) or shared-slices (one image set), or give 3D volumes with --data"
            )
        stack, shapes = dataset.prepare(train_parts, phase_map, model_config.crop_size)
        spec = dataset.CropSpec(
            model_config.crop_size,
            config.batch_size,
            phase_map.n_phases,
            shapes,
            config.sampling,
            config.stride,
            config.augment,
        )
        dataset.check_spec(spec)
        data = {"volumes": data_fingerprint(volumes, sources), "holdout": holdout}
        return spec, dataset.device_arrays(stack, spec), f"training volume(s) {shapes}, {spec.crop}^3 crops", data
    if config.sampling != "random" or config.augment:
        raise PorejaxError(
            "slice discriminators sample random slices without augmentation: drop --sampling strided and --augment"
        )
    if images is not None and config.holdout:
        raise PorejaxError(
            "--holdout applies to 3D volumes, not to 2D images: drop it (hold out part of an image "
            "by cropping the image)"
        )
    sets = slices.image_sets(config.discriminator, train_parts, images)
    spec, arrays = slices.prepare(
        sets, phase_map, model_config.crop_size, config.batch_size, config.slices_per_volume or model_config.crop_size
    )
    names = sources if isinstance(sources, Mapping) else {}
    fingerprints = {} if images is None else {name: data_fingerprint(sets[name], names.get(name)) for name in spec.keys}
    data = {
        "volumes": data_fingerprint(volumes, None if images is not None else sources),
        "holdout": holdout,
        "slices": {"discriminators": list(spec.keys), "images": fingerprints},
    }
    described = (
        f"slice discriminator(s) {list(spec.keys)} on {spec.crop}^2 slices ({spec.per_volume} per "
        f"generated volume and axis) of images {dict(zip(spec.keys, spec.shapes))}"
    )
    return spec, arrays, described, data


def _check_resumable(
    workdir: Path, meta: dict, model_config: ModelConfig, phase_map: PhaseMap, config: TrainConfig, data: dict
) -> None:
    if "train" not in meta or "data" not in meta:
        raise PorejaxError(f"{workdir} holds a checkpoint not written by `porejax train`: choose another --workdir")
    problems = []
    if ModelConfig.from_dict(meta["model"]) != model_config:
        problems.append(f"model {meta['model']} vs now {model_config.to_dict()} (check --preset)")
    if meta["phase_map"]["labels"] != list(phase_map.labels):
        problems.append(f"phase labels {meta['phase_map']['labels']} vs now {list(phase_map.labels)}")
    if not _same_data(meta["data"], data):
        problems.append("the training data differ (volume bytes or holdout)")
    old, new = _recipe(TrainConfig(**meta["train"])), _recipe(config)
    problems += [
        f"{f.name} {getattr(old, f.name)} vs now {getattr(new, f.name)}"
        for f in dataclasses.fields(old)
        if f.name not in RESUME_MAY_CHANGE and getattr(old, f.name) != getattr(new, f.name)
    ]
    if problems:
        raise PorejaxError(
            f"cannot resume {workdir}: its checkpoint was trained differently: "
            f"{'; '.join(problems)}: use the original settings or another --workdir"
        )


def _history(meta: dict, name: str, start_step: int, value: float) -> list[list]:
    """[[first step, value], ...] of recipe field `name` (one of RESUME_MAY_CHANGE) in a resumed run."""
    first = [[0, meta["train"].get(name, getattr(TrainConfig, name))]]
    history = [list(entry) for entry in meta.get(f"{name}_history", first) if entry[0] < start_step]
    return history if history and history[-1][1] == value else history + [[start_step, value]]


# --- quick evaluation and images --------------------------------------------------------------------
def _phase_statistics(indices: np.ndarray, n_phases: int, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per volume and phase: (volume fraction, face-counting specific surface area in 1/voxel_size units),
    each (B, n_phases), of phase-index volumes (B, S, S, S)."""
    phases = list(range(n_phases))
    vf = metrics.volume_fraction(indices, phases)
    ssa = metrics.specific_surface_area(indices, voxel_size, phases)
    return (np.asarray([[row[p] for p in phases] for row in vf]), np.asarray([[row[p] for p in phases] for row in ssa]))


def _evaluation(gen: np.ndarray, real: np.ndarray, phase_map: PhaseMap) -> dict:
    dx = phase_map.voxel_size or 1.0
    vf_g, ssa_g = _phase_statistics(gen, phase_map.n_phases, dx)
    vf_r, ssa_r = _phase_statistics(real, phase_map.n_phases, dx)
    rnd = lambda a: [round(float(v), 5) for v in a]  # noqa: E731
    # real 2D slices (B, 1, S, S) have no surface area comparable with a volume's
    surface = {"ssa_real": rnd(ssa_r.mean(0))} if real.shape[1] > 1 else {}
    return {
        "phases": [phase_map.name(i) for i in range(phase_map.n_phases)],
        "vf": rnd(vf_g.mean(0)),
        "vf_std": rnd(vf_g.std(0)),
        "vf_real": rnd(vf_r.mean(0)),
        "ssa": rnd(ssa_g.mean(0)),
        **surface,
        "ssa_unit": "1/um" if phase_map.voxel_size else "1/voxel",
    }


# --- the loop -------------------------------------------------------------------------------------
def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _read_log(path: Path, upto: int) -> list[dict]:
    """Log records with step <= `upto` (a resumed run rewrites what followed its checkpoint)."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")  # a last line without "\n" is a partial write (a full disk, a kill)
    records = [json.loads(line) for line in lines[:-1] if line.strip()]
    return [r for r in records if r["step"] <= upto]


def _warm_start_source(source: str | os.PathLike, model_config: ModelConfig, phase_map: PhaseMap) -> dict:
    """{"checkpoint", "step"} of the generator a new run starts from, after checking it fits."""
    meta = checkpoint.read_metadata(source)
    other, other_phases = checkpoint.model_and_phases(meta)
    mine = (model_config.generator_layers, model_config.latent_channels)
    if (other.generator_layers, other.latent_channels) != mine:
        raise PorejaxError(
            f"cannot start from the generator in {source}: its layers (channels, kernel, stride, "
            f"padding) {other.generator_layers} and latent channels {other.latent_channels} differ "
            f"from this model's {mine[0]} and {mine[1]}: choose a preset with the same generator"
        )
    if list(other_phases.labels) != list(phase_map.labels):
        raise PorejaxError(
            f"cannot start from the generator in {source}: its phase labels "
            f"{list(other_phases.labels)} differ from the data's {list(phase_map.labels)}"
        )
    step = checkpoint.latest_step(source)
    if step is None:
        raise PorejaxError(f"{source} has no saved step to start from")
    return {"checkpoint": str(source), "step": step}


def _start_state(
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
        g_ema = _copy(restored["g_params"])
    return TrainState(**restored, g_ema=g_ema if config.ema_decay > 0 else None)


def _copy(tree: Any) -> Any:
    """Arrays with buffers of their own (a donated state must not hold one buffer twice)."""
    return jax.tree_util.tree_map(jnp.copy, tree)


def _real_reference(arrays: dict, spec: dataset.CropSpec | slices.SliceSpec, seed: int) -> np.ndarray:
    """REAL_EVAL_CROPS phase-index crops (B, S, S, S) of the training data, the same for every evaluation
    ((B, 1, S, S) slices for slice discriminators)."""
    if isinstance(spec, slices.SliceSpec):
        return slices.real_reference(arrays, spec, REAL_EVAL_CROPS, seed)
    spec = dataclasses.replace(spec, batch_size=REAL_EVAL_CROPS, augment=False)
    sample = jax.jit(lambda a, k: dataset.sample_batch(a, spec, k, jax.random.PRNGKey(0), 0))
    return np.asarray(jnp.argmax(sample(arrays, jax.random.PRNGKey(seed + 1)), -1))


def _quick_evaluation(
    model_config: ModelConfig,
    phase_map: PhaseMap,
    frozen: dict,
    real: np.ndarray,
    config: TrainConfig,
    path: Path,
    step: int,
) -> dict:
    """Generate `eval_samples` volumes (fixed latents of the statistics' size: `statistics_latent`), compare
    their volume fractions and surface areas with those of the real crops `real`, draw them."""
    from porejax import figures
    from porejax.generate import FrozenGenerator

    gen = FrozenGenerator(model_config, phase_map, jax.device_get(frozen))
    side, periodic, _ = statistics_latent(model_config, config.latent, config.batch_size)
    z = draw_latents(model_config, jax.random.PRNGKey(config.seed + 2), config.eval_samples, side)
    generated = np.argmax(gen.probabilities(np.asarray(z), periodic=periodic), axis=-1)
    figures.save_png(
        figures.training_samples(generated, real, f"step {step}: generated (top), real (bottom), middle x slices"), path
    )
    return _evaluation(generated, real, phase_map)


def _progress_line(record: dict, config: TrainConfig) -> str:
    rate = record["steps_per_s"] or float("nan")
    eta = (config.steps - record["step"]) / rate if rate > 0 else float("nan")
    real, fake = ("D(x)", "D(G(z))") if config.loss == "bce" else ("C(x)", "C(G(z))")
    line = (
        f"step {record['step']}/{config.steps}  {rate:.3f} steps/s  loss_d {record['loss_d']:.4f}  "
        f"loss_g {record['loss_g']:.4f}  {real} {record['d_real']:.3f}  {fake} {record['d_fake']:.3f}  "
        f"ETA {_fmt_duration(eta)}"
    )
    if "eval" in record:
        line += f"  vf {record['eval']['vf']} (real {record['eval']['vf_real']})"
    return line


def train(
    volumes: Sequence[np.ndarray],
    phase_map: PhaseMap,
    workdir: str | os.PathLike,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    resume: bool = False,
    preset: str | None = None,
    sources: Sequence[str] | None = None,
    devices: Sequence[jax.Device] | None = None,
    generator_from: str | os.PathLike | None = None,
    progress: bool = True,
    images: slices.ImageSets | None = None,
) -> dict:
    """Train on label `volumes` (original label values, mapped by `phase_map`) into `workdir`.

    With `config.discriminator` "slices" or "shared-slices" the discriminators judge 2D slices
    (`porejax.train_slices`): of the `volumes`, or of 2D label `images` ({"xyz": stacks} or {"x", "y", "z"},
    see `porejax.slices`; `volumes` then empty, `sources` optionally {key: names}).

    Holds out the last `config.holdout` x-slices of every volume. Writes WORKDIR/porejax.json (model,
    PhaseMap, train config, data fingerprint and held-out region), WORKDIR/checkpoints/<step>/ (generator
    with standing statistics + full train state) every `config.checkpoint_every` steps and at the end,
    WORKDIR/log.jsonl (every `log_every` steps; with "eval" every `eval_every`; "time" is wall seconds
    since the run started, continued by a resumed run from its checkpoint's last record) and
    WORKDIR/samples/step_*.png. `resume`: continue from the newest checkpoint, whose model, PhaseMap, data
    and recipe must match, except the learning rate and the EMA decay, which may change (recorded in
    porejax.json under "lr_history" and "ema_decay_history"; an average started on resume starts from the
    weights of that step). With `config.ema_decay` > 0 the saved generators hold the moving average of
    the generator's weights (with its own standing statistics). `devices`: the mesh (default all). `generator_from`:
    a checkpoint directory
    whose newest generator (same generator network and phases) a new run starts from, with a fresh
    discriminator and optimiser (e.g. a deeper discriminator on larger crops); recorded in porejax.json
    under "warm_start". Returns a summary dict.

    The run holds WORKDIR/train.lock (`porejax.lock`): a second run into the same workdir is refused while
    this one lives. `resume` into a missing workdir is an error; into one without a checkpoint yet (a run
    killed before its first save) it starts from step 0, saying so. Temporary folders of saves that failed
    or were killed are removed first. A failed save (e.g. a full disk) leaves the earlier steps as they were.
    """
    workdir = Path(workdir)
    if resume and not workdir.is_dir():
        raise PorejaxError(
            f"cannot resume {workdir}: it does not exist: check the path, or drop --resume to start a new run there"
        )
    is_main = jax.process_index() == 0
    with (
        workdir_lock(workdir) if is_main else contextlib.nullcontext(),
        checkpoint.Checkpoints(workdir, keep_period=config.keep_every) as store,
    ):
        for partial in store.remove_partial() if is_main else []:
            print(f"porejax train: removed {partial}, the unfinished save of an earlier run", file=sys.stderr)
        return _train(
            store,
            volumes,
            phase_map,
            model_config,
            config,
            resume=resume,
            preset=preset,
            sources=sources,
            devices=devices,
            generator_from=generator_from,
            progress=progress,
            images=images,
        )


def _train(
    store: checkpoint.Checkpoints,
    volumes: Sequence[np.ndarray],
    phase_map: PhaseMap,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    resume: bool,
    preset: str | None,
    sources: Sequence[str] | None,
    devices: Sequence[jax.Device] | None,
    generator_from: str | os.PathLike | None,
    progress: bool,
    images: slices.ImageSets | None,
) -> dict:
    """`train` in a locked workdir whose saved steps `store` manages."""
    workdir = store.workdir
    config = config.resolved()
    if config.loss == "wgan-gp" and model_config.d_norm == "batch":
        model_config = dataclasses.replace(model_config, d_norm="layer")  # the penalty needs a per-sample critic
    training_latent(model_config, config.latent)  # refuses latents that cannot make crop-size volumes
    mesh = make_mesh(devices)
    if config.batch_size % mesh.size:
        raise PorejaxError(
            f"batch size {config.batch_size} is not divisible by the {mesh.size} devices: use a multiple of {mesh.size}"
        )
    spec, host_arrays, described, data = _training_data(volumes, images, phase_map, model_config, config, sources)

    saved = store.steps() if (workdir / checkpoint.METADATA_FILE).exists() else []
    start_step = saved[-1] if saved else None
    if resume and start_step is None and progress and jax.process_index() == 0:
        print(f"porejax train: {workdir} holds no checkpoint yet: starting from step 0", file=sys.stderr)
    if start_step is not None:
        if not resume:
            raise PorejaxError(
                f"{workdir} already holds a training run (step {start_step}): pass --resume to "
                "continue it, or choose another --workdir"
            )
        old_meta = checkpoint.read_metadata(workdir)
        _check_resumable(workdir, old_meta, model_config, phase_map, config, data)
        warm_start = old_meta.get("warm_start")
        histories = {
            f"{name}_history": _history(old_meta, name, start_step, getattr(config, name)) for name in RESUME_MAY_CHANGE
        }
    else:
        warm_start = None if generator_from is None else _warm_start_source(generator_from, model_config, phase_map)
        histories = {f"{name}_history": [[0, getattr(config, name)]] for name in RESUME_MAY_CHANGE}
    is_main = jax.process_index() == 0
    log_path = workdir / LOG_FILE
    records = _read_log(log_path, start_step or 0)
    if is_main:
        extra = {"warm_start": warm_start} if warm_start else {}
        checkpoint.write_metadata(
            workdir,
            model_config,
            phase_map,
            train=config.to_dict(),
            data=data,
            preset=preset,
            devices=mesh.size,
            **histories,
            **extra,
        )
        (workdir / SAMPLES_DIR).mkdir(exist_ok=True)
        log_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    time_offset, t_start = (records[-1]["time"] if records else 0.0), time.perf_counter()

    state = _start_state(model_config, config, store, start_step, mesh)
    if start_step is None and warm_start is not None:
        _, variables, _ = checkpoint.restore_generator(warm_start["checkpoint"], warm_start["step"])
        variables = jax.device_put(variables, NamedSharding(mesh, PartitionSpec()))
        state = dataclasses.replace(
            state,
            g_params=variables["params"],
            g_stats=variables["batch_stats"],
            g_ema=None if state.g_ema is None else _copy(variables["params"]),
        )
    arrays = _replicate(host_arrays, mesh)
    compile_start = time.perf_counter()
    step_fn = compile_step(model_config, config, spec, mesh, state, arrays)
    compile_s = time.perf_counter() - compile_start
    real = _real_reference(arrays, spec, config.seed)
    step = int(state.step)
    if progress and is_main:
        print(
            f"porejax train: {workdir}, {mesh.size} device(s), {described}, batch {config.batch_size}, "
            f"loss {config.loss}, from step {step} "
            f"to {config.steps}; step compiled in {compile_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    last_saved, metrics, rate = start_step, {}, float("nan")
    window = (step, time.perf_counter())
    while step < config.steps:
        state, metrics = step_fn(state, arrays)
        step += 1
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not all(math.isfinite(v) for v in metrics.values()):
            values = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            raise PorejaxError(
                f"non-finite loss at step {step} ({values}); last good checkpoint: step {last_saved} "
                f"in {workdir}: resume from it with --resume, or try a lower --lr or --loss wgan-gp"
            )
        final = step == config.steps
        eval_due = step % config.eval_every == 0 or final
        save_due = step % config.checkpoint_every == 0 or final
        frozen = frozen_generator(model_config, state, config, mesh) if (eval_due or save_due) else None
        if step % config.log_every == 0 or eval_due:
            now = time.perf_counter()
            rate, window = (step - window[0]) / (now - window[1]), (step, now)
            record = {
                "step": step,
                **{k: round(v, 6) for k, v in metrics.items()},
                "time": round(time_offset + now - t_start, 3),
                "steps_per_s": round(rate, 4),
            }
            if eval_due and is_main:
                record["eval"] = _quick_evaluation(
                    model_config, phase_map, frozen, real, config, workdir / SAMPLES_DIR / f"step_{step:06d}.png", step
                )
            if is_main:
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
                if progress:
                    print(_progress_line(record, config), file=sys.stderr, flush=True)
        if save_due:
            store.save(step, generator=frozen, state=state.to_dict())
            last_saved = step
    return {
        "workdir": str(workdir),
        "step": step,
        "metrics": metrics,
        "compile_s": compile_s,
        "steps_per_s": rate,
        "last_checkpoint": last_saved,
    }
