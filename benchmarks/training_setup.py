"""What the training benchmarks share: the paper's training set-up, its flop count, peak memory, and a
short cpu-preset training run on the synthetic cathode."""

from __future__ import annotations

import resource

N_PHASES = 3
VOLUME_SIDE = 96


def flops_per_sample(
    g_widths=(512, 256, 128, 64), d_widths=(16, 32, 64, 128), latent=100, n_phases=N_PHASES, k: int = 2
) -> float:
    """Floating-point operations of one iteration per sample, counting what PyTorch's autograd computes.

    Forward cost of a layer = 2 * k^3 * C_in * C_out per input voxel (transposed convolution) or per
    output voxel (convolution), kernel k = 4. Backward = input and weight gradients (2x forward), without
    the input gradient of layers whose input needs none (G1: the latent; D1 in the D update: data and
    detached fakes).
    """
    g_channels = (latent, *g_widths, n_phases)
    g_inputs = [1] + [4 * 2**i for i in range(len(g_widths))]  # input sides 1, 4, 8, 16, 32
    g = [2 * n**3 * 64 * a * b for n, a, b in zip(g_inputs, g_channels[:-1], g_channels[1:])]
    d_channels = (n_phases, *d_widths, 1)
    d_outputs = [32 // 2**i for i in range(len(d_widths))] + [1]  # output sides 32, 16, 8, 4, 1
    d = [2 * n**3 * 64 * a * b for n, a, b in zip(d_outputs, d_channels[:-1], d_channels[1:])]
    g_fwd, d_fwd = sum(g), sum(d)
    d_step = g_fwd + 2 * d_fwd + 2 * d_fwd + 2 * (d_fwd - d[0])  # fwd, weight grads, input grads
    g_step = g_fwd + d_fwd + 2 * d_fwd + 2 * g_fwd - g[0]
    return float(d_step + k * g_step)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def paper_training(batch: int, precision: str = "float32", latent: str = "point", preset_name: str = "paper"):
    """The networks of `preset_name` (the paper's by default) and the paper's recipe at `batch` on a random
    label volume, one device: (model_config, train_config, crop spec, mesh, fresh state, device data
    arrays). `latent`: "point" (the paper's 1^3 training latents) or "periodic" (porejax's default)."""
    import dataclasses

    import jax
    import numpy as np

    from porejax import dataset, presets, train
    from porejax.volume import PhaseMap

    model_config = dataclasses.replace(presets.model(preset_name, N_PHASES), compute_dtype=precision)
    config = train.TrainConfig(batch_size=batch, latent=latent).resolved()
    volume = np.random.default_rng(0).integers(0, N_PHASES, (VOLUME_SIDE,) * 3).astype(np.uint8)
    stack, shapes = dataset.prepare([volume], PhaseMap((0, 1, 2)), model_config.crop_size)
    spec = dataset.CropSpec(model_config.crop_size, batch, N_PHASES, shapes)
    mesh = train.make_mesh(jax.devices()[:1])
    state = train.init_state(model_config, config)
    return model_config, config, spec, mesh, state, jax.device_put(dataset.device_arrays(stack, spec))


def synthetic_cpu_run(workdir, precision: str, steps: int, seed: int = 0, **cadence):
    """Train the cpu preset on the synthetic cathode 96^3 into `workdir` for `steps` steps (float32 or
    bfloat16 products); returns (volume, phase_map, model_config, train_config)."""
    from porejax import presets, synthetic, train
    from porejax.volume import PhaseMap

    volume = synthetic.cathode(96, seed=0)
    phase_map = PhaseMap.from_volume(volume)
    config = presets.recipe("cpu", steps=steps, checkpoint_every=steps, seed=seed, **cadence)
    model_config = presets.model("cpu", phase_map.n_phases, precision=precision)
    train.train([volume], phase_map, workdir, model_config, config, progress=False)
    return volume, phase_map, model_config, config
