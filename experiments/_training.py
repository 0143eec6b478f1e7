"""Shared command line of the training experiments (`train_cathode`, `train_anode`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from porejax import train
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap


def parser(description: str, default_workdir: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, action="append", help="label volume(s); default: the built-in synthetic data")
    p.add_argument("--preset", default="cpu", choices=tuple(train.TRAIN_PRESETS))
    p.add_argument("--workdir", type=Path, default=Path(default_workdir))
    p.add_argument("--steps", type=int, help="total steps (default: the preset's)")
    p.add_argument("--loss", choices=("bce", "wgan-gp"))
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's; may differ on --resume)")
    p.add_argument("--batch-size", type=int, help="default: the preset's")
    p.add_argument(
        "--ema-decay",
        type=float,
        help="generate from a moving average of the generator's weights (e.g. 0.999; may start on --resume)",
    )
    p.add_argument("--latent", choices=("periodic", "point"), help="training latents (default periodic)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), help="convolution products (default float32)")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--generator-from",
        type=Path,
        help="start a new run from this checkpoint's generator (same generator widths), fresh discriminator",
    )
    return p


def run(
    args: argparse.Namespace,
    volumes: Sequence[np.ndarray],
    phase_map: PhaseMap,
    holdout: int,
    sources: Sequence[str],
    note: Callable[[], str] | None = None,
) -> int:
    """Train `volumes` with the experiment's settings; errors print one line and exit 2."""
    try:
        model_config = train.model_for(args.preset, phase_map.n_phases, precision=args.precision)
        config = train.train_preset(
            args.preset,
            steps=args.steps,
            loss=args.loss,
            seed=args.seed,
            holdout=holdout,
            lr=args.lr,
            batch_size=args.batch_size,
            latent=args.latent,
            ema_decay=args.ema_decay,
        )
        summary = train.train(
            volumes,
            phase_map,
            args.workdir,
            model_config,
            config,
            resume=args.resume,
            preset=args.preset,
            sources=sources,
            generator_from=args.generator_from,
        )
    except PorejaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"trained {args.workdir} to step {summary['step']}; generate with: "
        f"porejax generate --checkpoint {args.workdir} --size 128 --out sample.tif"
    )
    return 0
