"""Shared command line of the training experiments (`train_cathode`, `train_anode`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from porejax import cli, presets, train
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap


def parser(description: str, default_workdir: str) -> argparse.ArgumentParser:
    """The experiment's command line: its data and workdir, and the training options of `porejax train`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, action="append", help="label volume(s); default: the built-in synthetic data")
    p.add_argument("--workdir", type=Path, default=Path(default_workdir))
    cli.add_training_arguments(p)
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
        preset = args.preset or presets.DEFAULT
        model_config, config = cli.training_configs(args, preset, phase_map.n_phases, holdout=holdout)
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
        )
    except PorejaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"trained {args.workdir} to step {summary['step']}; generate with: "
        f"porejax generate --checkpoint {args.workdir} --size 128 --out sample.tif"
    )
    return 0
