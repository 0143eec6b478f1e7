"""`porejax characterise`, `compare` and `design`: measuring, comparing and designing volumes."""

from __future__ import annotations

import sys
from pathlib import Path

from porejax.cli.arguments import add_checkpoint_step
from porejax.errors import PorejaxError


# --- characterise ----------------------------------------------------------------------------------
def add_characterise(sub) -> None:
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


# --- compare ---------------------------------------------------------------------------------------
def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="compare real and generated microstructures: report.md/.html, figures, JSON")
    p.add_argument(
        "--real",
        required=True,
        type=Path,
        nargs="+",
        help="real label volume(s) (TIFF/.npy) with the checkpoint's labels; crops are spread over them",
    )
    add_checkpoint_step(p)
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


# --- design ----------------------------------------------------------------------------------------
def add_design(sub) -> None:
    p = sub.add_parser("design", help="design a volume to order: optimise the latent for target properties")
    add_checkpoint_step(p)
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
    from porejax.design.output import write_design
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
