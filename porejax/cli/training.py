"""`porejax train` and `porejax demo`, and the training options the experiments share."""

from __future__ import annotations

import argparse
from pathlib import Path

from porejax import presets
from porejax.errors import PorejaxError


# --- train -----------------------------------------------------------------------------------------
def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a generator on label volumes (resumable, data parallel)")
    p.add_argument(
        "--data", type=Path, action="append", help="training label volume (TIFF/.npy); repeat for several volumes"
    )
    p.add_argument(
        "--slices",
        type=Path,
        action="append",
        metavar="IMG",
        help="train from 2D images of an isotropic material: a 2D label image (TIFF/.npy) or a stack "
        "of images of one plane; repeat for several; one discriminator judges slices along x, y and z",
    )
    for axis, plane in zip("xyz", ("(y, z)", "(x, z)", "(x, y)")):
        p.add_argument(
            f"--slices-{axis}",
            type=Path,
            action="append",
            metavar="IMG",
            help=f"2D label image(s) of the plane normal to {axis}, array axes {plane} (anisotropic "
            "material: give all three)",
        )
    p.add_argument(
        "--discriminator",
        choices=("volume", "slices", "shared-slices", "volume+slices"),
        help="volume: 3D crops (default for --data); slices: 2D, one per axis (--slices-x/-y/-z, or "
        "the slices of --data volumes); shared-slices: 2D, one for all axes (--slices); volume+slices: "
        "a 3D discriminator on crops of --data volumes beside one on their slices per axis",
    )
    p.add_argument(
        "--slices-per-volume",
        type=int,
        help="slice discriminators: random slices per generated volume and axis (default all)",
    )
    p.add_argument("--workdir", type=Path, required=True, help="checkpoint directory (logs, samples, checkpoints)")
    p.add_argument("--holdout", type=int, help="hold out the last N slices along x of every volume")
    p.add_argument("--names", help="phase names, comma-separated, in label order")
    p.add_argument("--voxel-size", type=float, help="voxel edge length in micrometres")
    add_training_arguments(p)
    p.set_defaults(run=_run_train)


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a training run that `porejax train` and the training experiments share: preset,
    recipe, cadence and resume (data sources, holdout and phase names are each command's own)."""
    p.add_argument(
        "--preset",
        choices=tuple(presets.PRESETS),
        help=f"network and recipe (default {presets.DEFAULT}; from 2D images {presets.DEFAULT_SLICES}): "
        + presets.describe().replace("%", "%%"),
    )
    p.add_argument("--steps", type=int, help="total steps (a resumed run continues up to it)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument(
        "--crop",
        type=int,
        help="crop side; must equal the preset's (its discriminator's depth sets it)",
    )
    p.add_argument("--loss", choices=("bce", "wgan-gp"), help="bce (the paper's, default) or wgan-gp")
    p.add_argument(
        "--lr",
        type=float,
        help="Adam learning rate for both networks (default: the preset's); may differ on "
        "--resume, e.g. lower to refine a run that has plateaued",
    )
    p.add_argument(
        "--r1",
        type=float,
        metavar="GAMMA",
        help="with --loss bce: the R1 penalty gamma / 2 * E ||grad_x D(x)||^2 on real samples, which keeps "
        "the discriminator's gradients small near the real data (e.g. 1 to 10; default 0: off)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        help="generate from an exponential moving average of the generator's weights with this decay "
        "(e.g. 0.999; default: the preset's; 0: off); may be switched on at --resume",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        help="convolution products: float32 (default) or bfloat16 (mixed precision: float32 weights; "
        "the generator's last and the discriminator's first layer stay float32)",
    )
    p.add_argument(
        "--latent",
        choices=("periodic", "point"),
        help="training latents: periodic (crop-sized, circular padding; default) or point (the paper's 1^3)",
    )
    p.add_argument("--sampling", choices=("random", "strided"), help="random crops or the paper's stride-8 epochs")
    p.add_argument("--augment", action="store_true", default=None, help="random flips and 90-degree rotations")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --workdir")
    p.add_argument(
        "--generator-from",
        type=Path,
        help="start a new run from the newest generator of this "
        "checkpoint directory (same generator widths and phases) with a fresh discriminator",
    )
    p.add_argument(
        "--discriminator-warmup",
        type=int,
        metavar="N",
        help="train only the discriminator(s) for the first N steps (the generator stays as it is): with "
        "--generator-from, a fresh discriminator first learns to judge the generator (default 0)",
    )
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument(
        "--keep-every",
        type=int,
        help="also keep the checkpoints of steps that are multiples of this "
        "(default: the preset's; 0: only the 3 newest)",
    )


def training_configs(args: argparse.Namespace, preset: str, n_phases: int, **fixed):
    """(ModelConfig, TrainConfig) of preset `preset` with the options of `add_training_arguments` given in
    `args` and the command's own recipe fields `fixed` (e.g. holdout) applied over the preset's values."""
    model_config = presets.model(preset, n_phases, args.crop, args.precision)
    config = presets.recipe(
        preset,
        steps=args.steps,
        batch_size=args.batch_size,
        loss=args.loss,
        lr=args.lr,
        latent=args.latent,
        sampling=args.sampling,
        augment=args.augment,
        seed=args.seed,
        log_every=args.log_every,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        keep_every=args.keep_every,
        ema_decay=args.ema_decay,
        r1_weight=args.r1,
        discriminator_warmup=args.discriminator_warmup,
        **fixed,
    )
    return model_config, config


def train_with_arguments(
    args: argparse.Namespace, volumes, phase_map, preset: str, sources, images=None, **fixed
) -> dict:
    """Train into `args.workdir` with the options of `add_training_arguments` (and the recipe fields `fixed`,
    see `training_configs`), print where the run stands and how to generate from it; train's summary."""
    from porejax import train

    model_config, config = training_configs(args, preset, phase_map.n_phases, **fixed)
    summary = train.train(
        volumes,
        phase_map,
        args.workdir,
        model_config,
        config,
        resume=args.resume,
        preset=preset,
        sources=sources,
        generator_from=args.generator_from,
        images=images,
    )
    print(
        f"trained {args.workdir} to step {summary['step']} (last checkpoint {summary['last_checkpoint']}); "
        f"generate with: porejax generate --checkpoint {args.workdir} --size 128 --out sample.tif"
    )
    return summary


def _run_train(args) -> int:
    from porejax import host, train
    from porejax.dataset import load_volumes
    from porejax.slices import SHARED_KEY, load_images

    if host.cpu_backend_expected():
        host.reuse_freed_memory()  # before JAX's first computation: ~10% faster iterations on CPU
    train.initialize_distributed()
    names = None if args.names is None else args.names.split(",")
    image_paths = _slice_images(args)
    if image_paths is None:
        volumes, phase_map = load_volumes(args.data, names, args.voxel_size)
        images, sources = None, [p.name for p in args.data]
    else:
        images, phase_map = load_images(image_paths, names, args.voxel_size)
        volumes, sources = [], {key: [p.name for p in paths] for key, paths in image_paths.items()}
    volume_data = images is None and args.discriminator in (None, "volume")
    preset = args.preset or (presets.DEFAULT if volume_data else presets.DEFAULT_SLICES)
    discriminator = args.discriminator or (
        None if images is None else "shared-slices" if SHARED_KEY in images else "slices"
    )
    train_with_arguments(
        args,
        volumes,
        phase_map,
        preset,
        sources,
        images=images,
        discriminator=discriminator,
        slices_per_volume=args.slices_per_volume,
        holdout=args.holdout,
    )
    return 0


def _slice_images(args) -> dict[str, list[Path]] | None:
    """The 2D image paths per discriminator key ({"xyz": ...} or {"x", "y", "z"}), or None for --data."""
    per_axis = {axis: getattr(args, f"slices_{axis}") for axis in "xyz" if getattr(args, f"slices_{axis}")}
    given = [
        flag
        for flag, value in (("--data", args.data), ("--slices", args.slices), ("--slices-x/-y/-z", per_axis))
        if value
    ]
    if len(given) != 1:
        raise PorejaxError(
            f"give one of --data (3D volumes), --slices (2D images, isotropic) or --slices-x, "
            f"--slices-y and --slices-z (2D images per plane); got {', '.join(given) or 'none'}"
        )
    if per_axis and len(per_axis) != 3:
        raise PorejaxError(
            f"anisotropic training needs an image of each plane: got {', '.join(sorted(per_axis))}, "
            "missing "
            + ", ".join(f"--slices-{a}" for a in "xyz" if a not in per_axis)
            + " (for an isotropic material give one image with --slices)"
        )
    if args.slices:
        return {"xyz": args.slices}
    return per_axis or None


# --- demo ------------------------------------------------------------------------------------------
def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train the tiny preset on a synthetic cathode (a few minutes), generate, draw")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from porejax.demo import DEMO_STEPS, run_demo

    run_demo(args.out, steps=args.steps or DEMO_STEPS, seed=args.seed)
    return 0
