"""What random slice subsets give: the noise they add to a step's gradients, against the noise every step
already has from drawing its latents.

A slice discriminator judges `per_volume` random slices per generated volume and axis, or all S of them
(`--slices-per-volume`, 0 = all). A subset's mean score is an unbiased estimate of the all-slices mean,
so subsets change no expected gradient; they add variance. From the state of a slice-trained run
(default: experiments/results/cathode_2d/run, its newest checkpoint), for `draws` batches of training
latents z_j (the run's batch size):

- g_all(z_j): the generator's gradient of its WGAN loss with every slice, and the critics' gradient of
  their fake term (the only term the subset enters);
- latent noise: the variance of g_all over the draws (sum over parameters; what drawing other latents
  moves a step's gradient by);
- subset noise for each `per_volume`: the mean of |g_N(z_j, k_j) - g_all(z_j)|^2 over the draws, with a
  random subset k_j per draw (what subsampling adds on top), its ratio to the latent noise, and the
  cosine between g_N and g_all.

A step's gradient variance is then latent + subset noise; with the step cost of each variant
(`benchmarks.slice_step`), variance x time says how much gradient signal a second of training buys.

    python -m benchmarks.slice_subsets [--run DIR] [--data VOLUME] [--per-volume 4 16] [--draws 8]

The run's images are cut again from the volume (`experiments.cathode_slices`, the images that run used).

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.cathode_slices import central_planes
from porejax import checkpoint, losses, train
from porejax.latents import draw_training_latents
from porejax.models import ModelConfig
from porejax.train.judges import judge_for
from porejax.train.steps import judged
from porejax.volume import read_volume

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "experiments" / "results" / "cathode_2d" / "run"
DATA = ROOT.parent / "shared" / "data" / "cathode_nmc_256.tif"


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree_util.tree_leaves(tree)])


def gradient_fn(ctx: train.StepContext):
    """(state, latents z, slice key) -> (generator gradient, critics' fake-term gradient), both flat."""

    def fn(state, z, key):
        fake, pullback = jax.vjp(lambda params: ctx.generate(params, state.g_stats, z)[0], state.g_params)
        batches = ctx.judge.fake(fake, key)

        def g_loss(volumes):
            scores, _ = judged(ctx, state.d_params, state.d_stats, ctx.judge.fake(volumes, key))
            return sum(losses.wgan_generator(s) for s in scores)

        def d_fake(params):
            scores, _ = judged(ctx, params, state.d_stats, batches)
            return sum(jnp.mean(s) for s in scores)

        (g_grad,) = pullback(jax.grad(g_loss)(fake))
        return _flat(g_grad), _flat(jax.grad(d_fake)(state.d_params))

    return jax.jit(fn)


def measure(run: Path, data: Path, per_volume: list[int], draws: int) -> dict:
    meta = checkpoint.read_metadata(run)
    model, phase_map = checkpoint.model_and_phases(meta)
    base = train.TrainConfig(**meta["train"]).resolved()
    images = {axis: [plane] for axis, plane in central_planes(read_volume(data)).items()}
    mesh = train.make_mesh()
    step = checkpoint.latest_step(run)
    with checkpoint.Checkpoints(run) as store:
        state = train.start_state(model, base, store, step, mesh)
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    z = [draw_training_latents(model, base.latent, jax.random.fold_in(k, 0), base.batch_size) for k in keys]
    grads = {}
    for n in [0] + per_volume:
        config = dataclasses.replace(base, slices_per_volume=n)
        spec, _, _, _ = train.training_data([], images, phase_map, model, config, None)
        fn = gradient_fn(train.StepContext(model, config, judge_for(model, spec, mesh), mesh))
        grads[n] = [fn(state, z[j], jax.random.fold_in(keys[j], 1)) for j in range(draws)]
    return {
        "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else run.name,
        "step": int(step),
        "batch_size": base.batch_size,
        "slice_side": model.crop_size,
        "draws": draws,
        "networks": {name: _noise(grads, i, per_volume, model) for i, name in enumerate(("generator", "critics"))},
    }


def _noise(grads: dict, i: int, per_volume: list[int], model: ModelConfig) -> dict:
    full = np.stack([np.asarray(g[i], np.float64) for g in grads[0]])
    latent = float(np.sum(np.var(full, axis=0, ddof=1)))
    out = {"gradient_norm": float(np.mean(np.linalg.norm(full, axis=1))), "latent_noise": latent, "subsets": {}}
    for n in per_volume:
        part = np.stack([np.asarray(g[i], np.float64) for g in grads[n]])
        extra = float(np.mean(np.sum((part - full) ** 2, axis=1)))
        cos = np.sum(part * full, axis=1) / (np.linalg.norm(part, axis=1) * np.linalg.norm(full, axis=1))
        out["subsets"][f"{n} of {model.crop_size}"] = {
            "subset_noise": extra,
            "subset / latent noise": round(extra / latent, 4),
            "cosine with all slices (mean)": round(float(np.mean(cos)), 4),
        }
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=RUN, help="a run trained on the three images")
    p.add_argument("--data", type=Path, default=DATA, help="the 3D volume the run's images were cut from")
    p.add_argument("--per-volume", type=int, nargs="+", default=[4, 16])
    p.add_argument("--draws", type=int, default=8)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.run.resolve(), args.data, args.per_volume, args.draws), indent=1))


if __name__ == "__main__":
    main()
