"""The training step against slice discriminators: a 3D generator judged on 2D slices (SliceGAN's method).

The generator, its periodic training latents, its state and its checkpoint are those of 3D training
(`porejax.train`); only the discriminator side differs. Per step the generator makes `batch_size`
crop-sized volumes; for each slicing direction (x, y, z) the discriminator of that direction (one per
axis, or one shared: `porejax.slices`) judges `per_volume` slices normal to that axis of every volume
(all of them by default, or a random subset) against as many real slices of its images. The
discriminators' losses and the generator's are sums over the three directions (with one shared
discriminator its gradient is the sum of the three directions' gradients).

`--loss bce`: one update of the discriminators (real and generated slices in separate passes, BatchNorm
batch statistics per pass) then k generator updates, the paper's recipe. `--loss wgan-gp`: n_critic
critic updates (each with its own real and generated slices and a gradient penalty per direction at
random interpolates of real and generated slices), then one generator update; with its defaults
(lambda 10, 5 critic steps, Adam 1e-4, betas (0, 0.9)) this is SliceGAN's recipe.

State: `TrainState` with d_params / d_stats / d_opt holding {name: ...} over the discriminators (one Adam
state over the tree: Adam is element-wise, so each discriminator has its own moments).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax import losses, slices, train
from porejax.models import ModelConfig, SliceDiscriminator


def _apply_d(model_config: ModelConfig, params: dict, stats: dict, name: str, x: jax.Array) -> tuple[jax.Array, dict]:
    """Discriminator `name` in training mode on slices x (N, S, S, C): (logits (N,), updated statistics of all)."""
    out, upd = SliceDiscriminator(model_config).apply(
        {"params": params[name], "batch_stats": stats[name]}, x, train=True, mutable=["batch_stats"]
    )
    return out, {**stats, name: upd.get("batch_stats", stats[name])}


def step_fn(model_config: ModelConfig, config: train.TrainConfig, spec: slices.SliceSpec, mesh: Mesh):
    """The pure step (state, image arrays {name: ...}) -> (state, metrics) for the configured loss."""
    tx = train._optimizer(config)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    _, periodic = train.training_latent(model_config, config.latent)
    gen = functools.partial(train._apply_g, model_config, periodic)
    disc = functools.partial(_apply_d, model_config)
    pairs = spec.pairs()

    def constrain(x):
        return jax.lax.with_sharding_constraint(x, batch)

    def latent(key):
        return constrain(train.draw_training_latents(model_config, config.latent, key, config.batch_size))

    def real_slices(arrays, key):
        return [
            constrain(slices.sample_real(arrays[name], spec, k))
            for (name, _), k in zip(pairs, jax.random.split(key, 3))
        ]

    def fake_slices(volumes, key):
        return [
            constrain(slices.generated_slices(volumes, axis, spec.per_volume, k))
            for (_, axis), k in zip(pairs, jax.random.split(key, 3))
        ]

    def g_update(g_loss, d_params, carry, key):
        g_params, g_stats, g_opt, d_stats = carry
        k_z, k_pick = jax.random.split(key)
        z = latent(k_z)

        def loss_fn(params):
            fake, new_g = gen(params, g_stats, z)
            stats, total, scores = d_stats, 0.0, []
            for (name, _), x in zip(pairs, fake_slices(fake, k_pick)):
                s, stats = disc(d_params, stats, name, x)
                total, scores = total + g_loss(s), scores + [s]
            return total, (new_g, stats, jnp.concatenate(scores))

        (loss, (g_stats, d_stats, scores)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g_params)
        updates, g_opt = tx.update(grads, g_opt, g_params)
        return (optax.apply_updates(g_params, updates), g_stats, g_opt, d_stats), (loss, scores)

    def bce_step(state: train.TrainState, arrays: dict):
        key, k_real, k_z, k_pick, k_g = jax.random.split(state.key, 5)
        real = real_slices(arrays, k_real)
        fake, g_stats = gen(state.g_params, state.g_stats, latent(k_z))
        fake = fake_slices(jax.lax.stop_gradient(fake), k_pick)

        def d_loss(params):
            stats, total, real_logits, fake_logits = state.d_stats, 0.0, [], []
            for (name, _), r, f in zip(pairs, real, fake):
                rl, stats = disc(params, stats, name, r)
                fl, stats = disc(params, stats, name, f)
                total += losses.bce_discriminator(rl, fl, config.real_label, config.fake_label)
                real_logits, fake_logits = real_logits + [rl], fake_logits + [fl]
            return total, (stats, jnp.concatenate(real_logits), jnp.concatenate(fake_logits))

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

    def wgan_step(state: train.TrainState, arrays: dict):
        key, k_critic, k_g = jax.random.split(state.key, 3)

        def critic_update(carry, k):
            d_params, d_opt, g_stats = carry
            k_real, k_z, k_pick, k_gp = jax.random.split(k, 4)
            real = real_slices(arrays, k_real)
            fake, g_stats = gen(state.g_params, g_stats, latent(k_z))
            fake = fake_slices(jax.lax.stop_gradient(fake), k_pick)

            def c_loss(params):
                total, gp, real_scores, fake_scores = 0.0, 0.0, [], []
                for (name, _), r, f, kp in zip(pairs, real, fake, jax.random.split(k_gp, 3)):
                    critic = lambda x, name=name: disc(params, state.d_stats, name, x)[0]  # noqa: E731
                    rs, fs = critic(r), critic(f)
                    penalty = losses.gradient_penalty(critic, r, f, kp)
                    total += losses.wgan_critic(rs, fs) + config.gp_weight * penalty
                    gp, real_scores, fake_scores = gp + penalty, real_scores + [rs], fake_scores + [fs]
                return total, (jnp.concatenate(real_scores), jnp.concatenate(fake_scores), gp / len(pairs))

            (loss, aux), grads = jax.value_and_grad(c_loss, has_aux=True)(d_params)
            updates, d_opt = tx.update(grads, d_opt, d_params)
            return (optax.apply_updates(d_params, updates), d_opt, g_stats), (loss,) + aux

        (d_params, d_opt, g_stats), (loss_d, real_scores, fake_scores, gp) = jax.lax.scan(
            critic_update,
            (state.d_params, state.d_opt, state.g_stats),
            jax.random.split(k_critic, config.n_critic),
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

    return bce_step if config.loss == "bce" else wgan_step
