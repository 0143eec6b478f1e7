"""Argument types and options that several sub-commands share."""

from __future__ import annotations

import argparse
from pathlib import Path


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_checkpoint_step(p) -> None:
    """--checkpoint DIR and --step N (a saved step; default the newest)."""
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument(
        "--step", type=int, help="saved step of the checkpoint to use (default the newest; `porejax info` lists them)"
    )
