"""`porejax init`, `synth`, `generate`, `info` and `import-torch`: checkpoints and volumes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from porejax import presets
from porejax.cli.arguments import add_checkpoint_step, float_list, int_list
from porejax.errors import PorejaxError


# --- init ------------------------------------------------------------------------------------------
def add_init(sub) -> None:
    p = sub.add_parser("init", help="write a checkpoint directory with freshly initialised networks")
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--preset", default="tiny", choices=tuple(presets.PRESETS), help="network preset (default tiny)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="label volume (TIFF/.npy) whose labels define the phases")
    src.add_argument("--labels", type=int_list, help="label values, e.g. 0,128,255")
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
def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic three-phase structure (the built-in data)")
    p.add_argument("kind", choices=("cathode", "anode"))
    p.add_argument("--size", type=int, required=True, help="side in voxels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fractions",
        type=float_list,
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
def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate volumes from a checkpoint (any size, periodic, chunked)")
    add_checkpoint_step(p)
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
        help="periodic axes, any subset of xyz (x, y, z = array axes 0, 1, 2); default none. A periodic "
        "side is a multiple of the period unit and, for generators trained on periodic latents, at least "
        "their training volume's side (smaller tori are another material: refused)",
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
            f"periodic '{args.periodic or 'none'}', seed {args.seed + i}, {time.perf_counter() - start:.2f} s"
        )
    return 0


# --- info ------------------------------------------------------------------------------------------
def add_info(sub) -> None:
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
def add_import_torch(sub) -> None:
    p = sub.add_parser("import-torch", help="convert a PyTorch DC-GAN generator state_dict into a checkpoint")
    p.add_argument("--state-dict", required=True, type=Path, help="generator state_dict (.pth, torch.save)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    p.add_argument("--labels", type=int_list, help="label values of the phases in order (default 0,1,...)")
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
