"""Shared command line of the training experiments (`train_cathode`, `train_anode`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from porejax import cli, presets
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
) -> int:
    """Train `volumes` with the experiment's settings; errors print one line and exit 2."""
    try:
        cli.train_with_arguments(args, volumes, phase_map, args.preset or presets.DEFAULT, sources, holdout=holdout)
    except PorejaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
