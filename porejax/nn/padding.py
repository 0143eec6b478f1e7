"""Padding primitives for channels-last volumes (B, D, H, W, C): zeros or circular, chosen per axis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax.numpy as jnp

PaddingMode = Literal["zeros", "circular"]
PADDING_MODES: tuple[str, ...] = ("zeros", "circular")
Modes = Sequence[str]  # one padding mode per spatial axis
ZEROS: tuple[str, str, str] = ("zeros", "zeros", "zeros")


def modes_for(periodic: Sequence[bool]) -> tuple[PaddingMode, PaddingMode, PaddingMode]:
    """Per-axis padding modes from per-axis periodic flags (x, y, z = axes 0, 1, 2)."""
    return tuple("circular" if p else "zeros" for p in periodic)  # type: ignore[return-value]


def pad_spatial(x: jnp.ndarray, pads: Sequence[tuple[int, int]], modes: Sequence[str]) -> jnp.ndarray:
    """Pad the three spatial axes of x (B, D, H, W, C).

    Args:
      pads: (before, after) voxel counts for each of the 3 spatial axes (non-negative).
      modes: "zeros" or "circular" for each spatial axis; circular pads wrap around (any amount,
        also more than the axis length).
    Returns: (B, D + pads[0][0] + pads[0][1], ..., C).
    """
    if len(pads) != 3 or len(modes) != 3:
        raise ValueError(f"need 3 spatial pads and modes, got {pads} and {modes}")
    for axis, ((before, after), mode) in enumerate(zip(pads, modes)):
        if mode not in PADDING_MODES:
            raise ValueError(f"padding mode must be one of {PADDING_MODES}, got {mode!r}")
        if before < 0 or after < 0:
            raise ValueError(f"pads must be non-negative, got {pads}")
        if before == 0 and after == 0:
            continue
        widths = [(0, 0)] * x.ndim
        widths[axis + 1] = (before, after)
        x = jnp.pad(x, widths, mode="wrap" if mode == "circular" else "constant")
    return x
