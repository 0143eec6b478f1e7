"""The `porejax` command. Each sub-command is a thin layer over the library; errors print one line.

Axis names: x, y, z are array axes 0, 1, 2 of a volume as read (the TauFactor / PoreSpy convention).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from porejax import presets
from porejax.errors import PorejaxError


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# --- init ------------------------------------------------------------------------------------------
def _add_init(sub) -> None:
    p = sub.add_parser("init", help="write a checkpoint directory with freshly initialised networks")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--preset", default="tiny", choices=tuple(presets.PRESETS), help="network preset (default tiny)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="label volume (TIFF/.npy) whose labels define the phases")
    src.add_argument("--labels", type=_int_list, help="label values, e.g. 0,128,255")
    p.add_argument("--names", help="phase names, comma-separated, in label order")
    p.add_argument("--voxel-size", type=float, help="voxel edge length in micrometres")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_init)


def _run_init(args) -> int:
    import jax

    from porejax import checkpoint
    from porejax.models import count_params, init_variables
    from porejax.volume import PhaseMap, read_volume

    names = None if args.names is None else args.names.split(",")
    if args.data is not None:
        phase_map = PhaseMap.from_volume(read_volume(args.data), names, args.voxel_size)
    else:
        phase_map = PhaseMap(tuple(args.labels), names, args.voxel_size)
    if checkpoint.latest_step(args.workdir) is not None:
        raise PorejaxError(f"{args.workdir} already holds a checkpoint: choose an empty --workdir")
    config = presets.model(args.preset, phase_map.n_phases)
    g_vars, _ = init_variables(config, jax.random.PRNGKey(args.seed))
    checkpoint.write_metadata(args.workdir, config, phase_map, preset=args.preset, seed=args.seed)
    checkpoint.save(args.workdir, 0, g_vars)
    print(
        f"wrote {args.workdir}: preset {args.preset}, {phase_map.n_phases} phases {phase_map.labels}, "
        f"generator {count_params(g_vars['params']):,} parameters"
    )
    return 0


# --- synth -----------------------------------------------------------------------------------------
def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic three-phase structure (the built-in data)")
    p.add_argument("kind", choices=("cathode", "anode"))
    p.add_argument("--size", type=int, required=True, help="side in voxels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fractions",
        type=_float_list,
        help="volume fractions of the three phases (pore, solid 1, solid 2), summing to 1",
    )
    p.add_argument("--out", type=Path, required=True, help="output .tif (or .npy)")
    p.set_defaults(run=_run_synth)


def _run_synth(args) -> int:
    from porejax import synthetic
    from porejax.volume import write_volume

    build = synthetic.cathode if args.kind == "cathode" else synthetic.anode
    kwargs = {} if args.fractions is None else {"fractions": tuple(args.fractions)}
    volume = build(args.size, seed=args.seed, **kwargs)
    write_volume(args.out, volume)
    labels, counts = __import__("numpy").unique(volume, return_counts=True)
    fractions = ", ".join(f"{label}: {c / volume.size:.3f}" for label, c in zip(labels, counts))
    print(f"wrote {args.out}: {args.kind} {volume.shape}, volume fractions {fractions}")
    return 0


# --- generate --------------------------------------------------------------------------------------
def _add_checkpoint_step(p) -> None:
    """--checkpoint DIR and --step N (a saved step; default the newest)."""
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument(
        "--step", type=int, help="saved step of the checkpoint to use (default the newest; `porejax info` lists them)"
    )


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate volumes from a checkpoint (any size, periodic, chunked)")
    _add_checkpoint_step(p)
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument(
        "--size",
        type=int,
        help="output side in voxels (exact; every voxel a sample of the material: "
        "non-periodic volumes of generators trained on periodic latents come from the latent's "
        "interior, away from zero-padded faces)",
    )
    size.add_argument(
        "--latent-size",
        type=int,
        help="latent side A: the whole output of A (periodic axes u A voxels, u the period unit; "
        "non-periodic axes u (A - 6) for generators trained on periodic latents, the interior "
        "only, or u (A + 3) for 1^3-trained ones)",
    )
    p.add_argument(
        "--periodic",
        default="",
        metavar="AXES",
        help="periodic axes, any subset of xyz (x, y, z = array axes 0, 1, 2); default none",
    )
    p.add_argument("--seed", type=int, default=0, help="latent seed; volume i of --count uses seed + i")
    p.add_argument("--count", type=int, default=1, help="number of volumes: writes OUT_0.tif ... OUT_{K-1}.tif")
    p.add_argument("--chunk", type=int, help="tile side in output voxels (any value gives the same bytes)")
    p.add_argument("--confidence", type=Path, help="also write the confidence map (max phase probability)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output .tif, or a chunked Zarr store VOL.zarr (written tile by tile, for volumes larger than RAM)",
    )
    p.add_argument(
        "--part",
        type=_part,
        metavar="I/N",
        help="Zarr only: write only the I-th (1-based) of N slabs along x, so N jobs fill one store",
    )
    p.set_defaults(run=_run_generate)


def _part(text: str) -> tuple[int, int]:
    """'I/N' (1-based) -> (I - 1, N)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 2/4, got {text!r}") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"part {text} needs 1 <= I <= N")
    return i - 1, n


def _numbered(path: Path | None, i: int, count: int) -> Path | None:
    return path if path is None or count == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}")


def _run_generate(args) -> int:
    from porejax.generate import load_generator, parse_periodic

    if args.count < 1:
        raise PorejaxError(f"--count must be at least 1, got {args.count}")
    if args.out.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise PorejaxError(f"--out must be a .tif or .tiff file or a .zarr store, got {args.out}")
    if args.part is not None and args.count != 1:
        raise PorejaxError("--part writes a slab of one volume: drop --count")
    gen = load_generator(args.checkpoint, args.step)
    periodic = parse_periodic(args.periodic)
    if args.size is not None:
        latent, size = gen.latent_size_for(args.size, periodic), (args.size,) * 3
    else:
        if args.latent_size < 1:
            raise PorejaxError(f"--latent-size must be at least 1, got {args.latent_size}")
        latent, size = (args.latent_size,) * 3, None
    for i in range(args.count):
        start = time.perf_counter()
        out = _numbered(args.out, i, args.count)
        settings = {"seed": args.seed + i, "periodic": args.periodic, "size": args.size, "latent_size": list(latent)}
        shape = gen.write(
            out,
            gen.latent(args.seed + i, latent),
            periodic,
            size,
            args.chunk,
            _numbered(args.confidence, i, args.count),
            args.part,
            settings,
        )
        what = "" if args.part is None else f" part {args.part[0] + 1}/{args.part[1]} of"
        print(
            f"wrote{what} {out}: {shape[0]}x{shape[1]}x{shape[2]} labels {list(gen.phase_map.labels)}, "
            f"periodic '{args.periodic or 'none'}', seed {args.seed + i}, {time.perf_counter() - start:.1f} s"
        )
    return 0


# --- info ------------------------------------------------------------------------------------------
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print a checkpoint's config, PhaseMap and parameter counts")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.set_defaults(run=_run_info)


def _run_info(args) -> int:
    from porejax import checkpoint
    from porejax.generate import load_generator
    from porejax.models import Discriminator, count_params
    import jax

    meta = checkpoint.read_metadata(args.checkpoint)
    gen = load_generator(args.checkpoint)
    config = gen.config
    d_shapes = jax.eval_shape(
        lambda: Discriminator(config).init(
            jax.random.PRNGKey(0), jax.numpy.zeros((1,) + (config.crop_size,) * 3 + (config.n_phases,))
        )
    )
    info = {
        "checkpoint": str(args.checkpoint),
        "step": gen.step,
        "steps_saved": checkpoint.steps(args.checkpoint),
        "model": config.to_dict(),
        "crop_size": config.crop_size,
        "period_unit": config.period_unit,
        "phase_map": gen.phase_map.to_dict(),
        "parameters": {
            "generator": count_params(gen.variables["params"]),
            "discriminator": count_params(d_shapes["params"]),
        },
        **{k: v for k, v in meta.items() if k not in ("model", "phase_map", "format", "version")},
    }
    print(json.dumps(info, indent=2))
    return 0


# --- import-torch ----------------------------------------------------------------------------------
def _add_import_torch(sub) -> None:
    p = sub.add_parser("import-torch", help="convert a PyTorch DC-GAN generator state_dict into a checkpoint")
    p.add_argument("--state-dict", required=True, type=Path, help="generator state_dict (.pth, torch.save)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    p.add_argument("--labels", type=_int_list, help="label values of the phases in order (default 0,1,...)")
    p.add_argument("--names", help="phase names, comma-separated, in label order")
    p.add_argument("--voxel-size", type=float, help="voxel edge length in micrometres")
    p.set_defaults(run=_run_import_torch)


def _run_import_torch(args) -> int:
    from porejax import checkpoint
    from porejax.interop.torch import import_generator

    names = None if args.names is None else args.names.split(",")
    out = import_generator(args.state_dict, args.out, args.labels, names, args.voxel_size)
    config, phase_map = checkpoint.model_and_phases(checkpoint.read_metadata(out))
    print(
        f"wrote {out}: generator widths {list(config.g_widths)}, latent channels {config.latent_channels}, "
        f"{phase_map.n_phases} phases {list(phase_map.labels)}; generate with "
        f"`porejax generate --checkpoint {out} ...`"
    )
    return 0


# --- compare ---------------------------------------------------------------------------------------
def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare real and generated microstructures: report.md/.html, figures, JSON")
    p.add_argument(
        "--real",
        required=True,
        type=Path,
        nargs="+",
        help="real label volume(s) (TIFF/.npy) with the checkpoint's labels; crops are spread over them",
    )
    _add_checkpoint_step(p)
    p.add_argument(
        "--n",
        type=int,
        default=100,
        help="generated volumes, and real crops unless the real volumes hold fewer distinct ones (default 100)",
    )
    p.add_argument("--size", type=int, default=64, help="side of every volume in voxels (default 64)")
    p.add_argument("--voxel-size", type=float, help="micrometres per voxel (default: the checkpoint's)")
    p.add_argument("--periodic", action="store_true", help="generate periodic volumes (x, y, z)")
    p.add_argument("--seed", type=int, default=0, help="seed of the real crop positions and the latents")
    p.add_argument("--out", required=True, type=Path, help="report directory")
    p.set_defaults(run=_run_compare)


def _run_compare(args) -> int:
    from porejax.compare import compare

    compare(
        args.real,
        args.checkpoint,
        n=args.n,
        size=args.size,
        voxel_size=args.voxel_size,
        periodic=args.periodic,
        seed=args.seed,
        out=args.out,
        progress=lambda line: print(line, flush=True),
        step=args.step,
    )
    return 0


# --- characterise ----------------------------------------------------------------------------------
def _add_characterise(sub) -> None:
    p = sub.add_parser("characterise", help="metrics of label volumes (vf, SSA, TPB, tortuosity) as a table and JSON")
    p.add_argument("volumes", nargs="+", type=Path, metavar="VOL", help="label volumes (.tif, .tiff or .npy)")
    p.add_argument(
        "--voxel-size",
        type=float,
        metavar="UM",
        help="voxel edge length in micrometres (default: the TIFF's metadata; without one, "
        'lengths are per voxel and the JSON\'s "units" says so)',
    )
    p.add_argument(
        "--periodic",
        action="store_true",
        help="periodic volumes: faces and edges across the boundary count, periodic side faces in the diffusion solves",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        help="metrics to compute, any of volume_fraction, specific_surface_area, tpb_density, tortuosity "
        "(default all; tortuosity includes "
        "relative_diffusivity)",
    )
    p.add_argument("--out", type=Path, metavar="FILE.json", help="also write the results as JSON")
    p.set_defaults(run=_run_characterise)


def _run_characterise(args) -> int:
    from porejax import jsonio
    from porejax.characterise import characterise_files, parse_metrics, table
    from porejax.metrics._common import check_voxel_size

    selected = parse_metrics(args.metrics)
    voxel_size = None if args.voxel_size is None else check_voxel_size(args.voxel_size)
    result = characterise_files(
        args.volumes,
        voxel_size,
        args.periodic,
        selected,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print("\n\n".join(table(record) for record in result["volumes"]))
    if args.out is not None:
        print(f"wrote {jsonio.write(args.out, result)}")
    return 0


# --- train -----------------------------------------------------------------------------------------
def _add_train(sub) -> None:
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
        choices=("volume", "slices", "shared-slices"),
        help="volume: 3D crops (default for --data); slices: 2D, one per axis (--slices-x/-y/-z, or "
        "the slices of --data volumes); shared-slices: 2D, one for all axes (--slices)",
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
        **fixed,
    )
    return model_config, config


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
    model_config, config = training_configs(
        args,
        preset,
        phase_map.n_phases,
        discriminator=discriminator,
        slices_per_volume=args.slices_per_volume,
        holdout=args.holdout,
    )
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
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train the tiny preset on a synthetic cathode (a few minutes), generate, draw")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from porejax.demo import DEMO_STEPS, run_demo

    run_demo(args.out, steps=args.steps or DEMO_STEPS, seed=args.seed)
    return 0


# --- design ----------------------------------------------------------------------------------------
def _add_design(sub) -> None:
    p = sub.add_parser("design", help="design a volume to order: optimise the latent for target properties")
    _add_checkpoint_step(p)
    p.add_argument("--size", type=int, required=True, help="side of the designed volume in voxels")
    p.add_argument("--periodic", default="", metavar="AXES", help="periodic axes, any subset of xyz; default none")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="TERM",
        help="NAME=VALUE, NAME<=VALUE or NAME>=VALUE; NAME: vf.PHASE, ssa.PHASE, tpb, tau.PHASE.AXIS, "
        "drel.PHASE.AXIS (PHASE: a phase name or label value; AXIS: x, y, z); repeat for several",
    )
    p.add_argument("--maximise", action="append", default=[], metavar="NAME", help="property to maximise")
    p.add_argument("--minimise", action="append", default=[], metavar="NAME", help="property to minimise")
    p.add_argument("--steps", type=int, default=100, help="at most this many optimiser steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the start latent (default 0)")
    p.add_argument(
        "--prior-weight",
        type=float,
        default=1.0,
        help="weight of the penalty on the latent's deviation from N(0, 1) statistics (default 1)",
    )
    p.add_argument(
        "--learning-rate",
        type=float,
        default=0.01,
        help="Adam learning rate with --maximise / --minimise (default 0.01); targets and bounds alone take "
        "Gauss-Newton steps",
    )
    p.add_argument("--samples", type=int, default=20, help="unconstrained samples for the S2 band (default 20)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(run=_run_design)


def _run_design(args) -> int:
    from porejax.design import make_problem, run_design
    from porejax.design_report import write_design
    from porejax.generate import load_generator

    if args.samples < 1:
        raise PorejaxError(f"--samples must be at least 1, got {args.samples}")
    gen = load_generator(args.checkpoint, args.step)
    problem = make_problem(gen, args.target, args.size, args.periodic, args.maximise, args.minimise, args.prior_weight)
    start = gen.latent(args.seed, problem.latent_shape)
    result = run_design(
        problem, args.seed, args.steps, args.learning_rate, progress=lambda line: print(line, flush=True)
    )
    info = {
        "checkpoint": str(args.checkpoint),
        "step": gen.step,
        "size": args.size,
        "periodic": args.periodic,
        "seed": args.seed,
        "steps": args.steps,
        "prior_weight": args.prior_weight,
        "learning_rate": args.learning_rate,
    }
    out = write_design(args.out, problem, result, start, info, args.samples)
    hard = ", ".join(f"{name} {value:.4g}" for name, value in result.hard.items())
    print(
        f"wrote {out}: design.tif, latent.npy, design.json, design.png; step {result.step}, {hard}; "
        f"{'all targets met' if result.reached else 'targets NOT all met'}; "
        f"{result.times['total_s']:.0f} s ({result.times['compile_s']:.0f} s compiling)"
    )
    return 0


COMMANDS: list[Callable] = [
    _add_init,
    _add_train,
    _add_demo,
    _add_synth,
    _add_generate,
    _add_info,
    _add_import_torch,
    _add_characterise,
    _add_compare,
    _add_design,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="porejax", description=__doc__.splitlines()[0])
    debug_help = "show the full traceback of an error instead of its one-line message"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # `porejax CMD ... --debug` too (SUPPRESS keeps a --debug given before CMD)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


# what to do about an OSError, by errno; the message names the path involved
_OS_FIXES = {
    errno.ENOSPC: "no space left on device writing {path}: free space there (`df -h`) or write to another folder",
    errno.EDQUOT: "disk quota exceeded writing {path}: free space in your quota or write to another folder",
    errno.EROFS: "{path} is on a read-only file system: write to another folder",
    errno.EACCES: "permission denied for {path}: check its permissions or use another path",
    errno.EPERM: "operation not permitted on {path}: check its permissions or use another path",
    errno.EISDIR: "{path} is a directory: give a file name",
    errno.ENOTDIR: "a part of {path} is a file, not a folder: check the path",
    errno.EEXIST: "{path} already exists: remove it or choose another name",
    errno.ENOENT: "{path} does not exist: check the path",
    errno.ENOTEMPTY: "{path} is a folder that is not empty: remove it or choose another name",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the problem with the path involved, and the fix."""
    path = exc.filename if exc.filename is not None else "a file"
    if exc.filename2 is not None:
        path = f"{exc.filename} -> {exc.filename2}"
    template = _OS_FIXES.get(exc.errno)
    if template is None:
        return f"{exc.strerror or exc} ({path})"
    return template.format(path=path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every failure a user can cause or meet ends as one line on stderr and status 2
    (130 when interrupted), unless --debug asks for the traceback."""
    args = build_parser().parse_args(argv)
    if not args.debug:  # orbax's logs and its orphaned reads of damaged checkpoints would bury the one line
        logging.getLogger("absl").setLevel(logging.CRITICAL)
        sys.unraisablehook = lambda unraisable: None
    try:
        return args.run(args)
    except (PorejaxError, OSError) as exc:
        if args.debug:
            raise
        message = os_error_message(exc) if isinstance(exc, OSError) else " ".join(str(exc).split("\n"))
        print(f"porejax {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"porejax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
