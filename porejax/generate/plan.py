"""Which latent voxels give which output voxels: sizes, periodic halos, tiles and per-layer crops.

Pure arithmetic on a `ModelConfig` (no arrays, no JAX), shared by one-shot, chunked and differentiable
generation. Frames: "zero-padding frame" indexes the outputs of the zero-padded generator applied to a
(possibly circularly padded) latent; an `_AxisPlan` maps output voxel 0 of a volume into that frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.models import ModelConfig

DEFAULT_CHUNK = 256  # output voxels per tile side when a volume is too large to generate in one piece
ONE_PIECE = 384  # largest side generated in one piece by default (paper network: ~5 GB peak, faster than tiles)


def parse_periodic(periodic: str | bool | Sequence[bool] | None) -> tuple[bool, bool, bool]:
    """Periodic axes from "xyz"-style strings ("" or None: none; True: all) or three booleans."""
    if periodic is None or periodic is False:
        return (False, False, False)
    if periodic is True:
        return (True, True, True)
    if isinstance(periodic, str):
        spec = periodic.lower().replace(",", "")
        if spec in ("none", ""):
            return (False, False, False)
        if spec == "all":
            spec = AXES
        if not set(spec) <= set(AXES) or len(set(spec)) != len(spec):
            raise PorejaxError(f"periodic axes must be a subset of 'xyz' (e.g. 'xyz', 'xy', ''), got {periodic!r}")
        return tuple(a in spec for a in AXES)  # type: ignore[return-value]
    flags = tuple(bool(p) for p in periodic)
    if len(flags) != 3:
        raise PorejaxError(f"periodic needs one flag per axis (x, y, z), got {periodic!r}")
    return flags  # type: ignore[return-value]


def as_triple(size: int | Sequence[int], what: str) -> tuple[int, int, int]:
    """`size` as three positive integers (one per axis); `what` names it in the error."""
    sizes = (size,) * 3 if np.ndim(size) == 0 else tuple(size)
    if len(sizes) != 3 or any(int(s) != s or s < 1 for s in sizes):
        raise PorejaxError(f"{what} must be a positive integer or three of them, got {size!r}")
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


def _input_interval(lo: int, hi: int, kernel: int, stride: int, padding: int) -> tuple[int, int]:
    """Inputs [lo', hi') a transposed conv reads to produce outputs [lo, hi) (zero-padding frame)."""
    return -((kernel - 1 - lo - padding) // stride), (hi - 1 + padding) // stride + 1


def _needed_ranges(config: ModelConfig, lo: int, hi: int) -> list[tuple[int, int]]:
    """Per layer, the outputs [a, b) (unclipped, zero-padding frame) that final outputs [lo, hi) depend on."""
    needed = [(lo, hi)]
    for _, kernel, stride, padding in config.generator_layers[:0:-1]:  # all but the first, from the last backwards
        needed.insert(0, _input_interval(*needed[0], kernel, stride, padding))
    return needed


def latent_window(config: ModelConfig, lo: int, hi: int) -> tuple[int, int]:
    """Latent indices [l0, l1) that output voxels [lo, hi) of the zero-padded generator depend on."""
    return _input_interval(*_needed_ranges(config, lo, hi)[0], *config.generator_layers[0][1:])


def layer_crops(config: ModelConfig, latent_side: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """Per generator layer, (start, length) of its computed output to keep so that the zero-padded
    generator on a latent window of `latent_side` yields exactly its outputs [lo, hi).

    Each kept range holds what [lo, hi) needs (traced back through the layers) inside what the layer
    computed from the kept range before it; its length depends only on hi - lo and the window (the longest
    need over all alignments), so equal tiles share one compiled program with the starts as arguments. A
    layer whose input was cut to start at s computes output j at uncut index stride * s + j.
    """
    span = hi - lo
    longest = [
        max(b - a for a, b in col)
        for col in zip(*(_needed_ranges(config, r, r + span) for r in range(config.period_unit)))
    ]
    longest[-1] = span
    kept, input_start, input_length = [], 0, latent_side
    for layer, ((a, b), length, (_, kernel, stride, padding)) in enumerate(
        zip(_needed_ranges(config, lo, hi), longest, config.generator_layers)
    ):
        computed = (input_length - 1) * stride - 2 * padding + kernel  # outputs the layer makes from its input
        first = stride * input_start  # uncut index of the first computed output
        a, b = max(a, first), min(b, first + computed)  # outputs beyond the computed ones do not exist
        length = min(length, computed)
        start = max(first, min(a, first + computed - length))
        if start > a or start + length < b:
            raise AssertionError(f"layer {layer}: kept [{start}, {start + length}) misses needed [{a}, {b})")
        kept.append((start - first, length))
        input_start, input_length = start, length
    return kept


def periodic_halo(config: ModelConfig) -> int:
    """Latent voxels of circular padding that make zero-padded generation equal periodic generation."""
    u = config.period_unit
    lo, hi = latent_window(config, 3 * u // 2, 3 * u // 2 + u)
    return max(0, -lo, hi - 1)


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """How one axis of an output volume maps to the zero-padded generator on a (padded) latent."""

    size: int  # output voxels
    offset: int  # output voxel 0 = this voxel of the zero-padded generator on the padded latent
    latent_pad: int  # circular latent padding (periodic axes)
    latent_size: int  # padded latent length


def min_periodic_latent(config: ModelConfig, interior: bool) -> int:
    """Smallest latent side of a periodic axis. For a generator trained on periodic latents (`interior`):
    the side it was trained on (crop / u); a smaller torus repeats latent values inside the generator's
    receptive field, an input it never saw, and gives another material (measured: README, "Python API").
    1 for generators trained on 1^3 latents, whose periodic volumes are an extrapolation at every size."""
    return max(1, config.crop_size // config.period_unit) if interior else 1


def _check_periodic_latent(config: ModelConfig, a: int, axis: int, interior: bool) -> None:
    least = min_periodic_latent(config, interior)
    if a < least:
        u = config.period_unit
        raise PorejaxError(
            f"a periodic volume of this generator needs at least {least * u} voxels ({least} latent voxels) "
            f"along {AXES[axis]}, the periodic volumes it was trained on; got {a * u}: smaller ones repeat "
            f"latent values within its receptive field and give another material. Use --size {least * u} "
            "or larger, or a non-periodic volume (any size)"
        )


def output_side(config: ModelConfig, latent_side: int, periodic: bool, interior: bool) -> int:
    """Output voxels along one axis for a latent of `latent_side`: u a periodic, u (a - 2 h) for the
    interior of a non-periodic axis (`interior`), u (a + 3) with zero-padded faces otherwise."""
    if periodic or not interior:
        return config.output_side(latent_side, periodic)
    return config.period_unit * (latent_side - 2 * periodic_halo(config))


def plan(
    config: ModelConfig,
    latent_shape: Sequence[int],
    periodic: Sequence[bool],
    size: Sequence[int] | None,
    interior: bool,
) -> list[AxisPlan]:
    """One `AxisPlan` per axis for a latent of `latent_shape` (periodic flags per axis, optional output
    `size` to centre-crop to, `interior`: non-periodic axes keep only voxels that see no padding)."""
    u, h, plans = config.period_unit, periodic_halo(config), []
    for axis, (a, circ) in enumerate(zip(latent_shape, periodic)):
        full = output_side(config, a, circ, interior)
        if full < 1:
            raise PorejaxError(
                f"a non-periodic volume needs a latent of at least {2 * h + 1} along {AXES[axis]} "
                f"(this generator's receptive field), got {a}: use latent_size_for(N) or --size"
            )
        n = full if size is None else size[axis]
        if n > full:
            raise PorejaxError(f"requested {n} voxels along {AXES[axis]} but a latent of {a} gives {full}")
        if circ:
            _check_periodic_latent(config, a, axis, interior)
            if n != full:
                raise PorejaxError(f"periodic output along {AXES[axis]} has exactly {full} voxels for latent {a}")
            plans.append(AxisPlan(n, u * h + 3 * u // 2, h, a + 2 * h))
        else:
            first = u * h + 3 * u // 2 if interior else 0  # the first voxel whose receptive field is all latent
            plans.append(AxisPlan(n, first + (full - n) // 2, 0, a))
    return plans


def latent_sides(
    config: ModelConfig, sizes: Sequence[int], periodic: Sequence[bool], interior: bool
) -> tuple[int, int, int]:
    """Smallest latent side per axis whose output covers `sizes` voxels (periodic axes: exactly; `interior`
    as in `plan`)."""
    u, latent = config.period_unit, []
    for axis, (n, circ) in enumerate(zip(sizes, periodic)):
        if circ and n % u:
            choices = " or ".join(str(c) for c in sorted({max(u, n // u * u), (n // u + 1) * u}))
            raise PorejaxError(
                f"a periodic volume needs a size that is a multiple of {u} (the generator's "
                f"period unit) along {AXES[axis]}; got {n}: use {choices}"
            )
        if circ:
            _check_periodic_latent(config, n // u, axis, interior)
            latent.append(n // u)
        elif interior:
            latent.append(math.ceil(n / u) + 2 * periodic_halo(config))
        else:
            latent.append(max(1, math.ceil(n / u) - 3))
    return tuple(latent)  # type: ignore[return-value]


def default_chunk(plans: Sequence[AxisPlan]) -> int:
    """Tile side when none is given: one piece up to ONE_PIECE voxels per axis, else DEFAULT_CHUNK.
    Every layer computes only what the tile needs (`layer_crops`), so tiles cost little more per voxel
    than one piece, at a bounded peak memory (benchmarks/NOTES.md)."""
    side = max(p.size for p in plans)
    return side if side <= ONE_PIECE else DEFAULT_CHUNK


def axis_tiles(axis: AxisPlan, chunk: int, config: ModelConfig) -> list[tuple[int, int, int, int]]:
    """(t0, t1, l0, l1) per tile along one axis: output range and the latent window it needs."""
    out = []
    for t0 in range(0, axis.size, chunk):
        t1 = min(axis.size, t0 + chunk)
        l0, l1 = latent_window(config, t0 + axis.offset, t1 + axis.offset)
        out.append((t0, t1, max(0, l0), min(axis.latent_size, l1)))
    return out


def tile_program(
    config: ModelConfig, plans: Sequence[AxisPlan], tile: Sequence[tuple[int, int, int, int]]
) -> tuple[tuple, tuple, np.ndarray]:
    """(latent slices, static kept lengths per layer and axis, kept starts int32 (layers, 3)) of one tile:
    `tile` holds one (t0, t1, l0, l1) per axis (see `axis_tiles`)."""
    u = config.period_unit
    crops = np.array(
        [
            layer_crops(config, t[3] - t[2], t[0] + p.offset - u * t[2], t[1] + p.offset - u * t[2])
            for t, p in zip(tile, plans)
        ]
    )
    window = tuple(slice(t[2], t[3]) for t in tile)
    return window, tuple(map(tuple, crops[..., 1].T.tolist())), np.asarray(crops[..., 0].T, np.int32)


def one_piece(config: ModelConfig, plans: Sequence[AxisPlan]) -> tuple[tuple, tuple, np.ndarray]:
    """`tile_program` of the whole volume as one tile."""
    return tile_program(config, plans, [axis_tiles(p, p.size, config)[0] for p in plans])


def pad_latents(zb: np.ndarray, plans: Sequence[AxisPlan]) -> np.ndarray:
    """Latents (B, A, A, A, C) padded circularly by each periodic axis's halo."""
    return np.pad(zb, [(0, 0)] + [(p.latent_pad, p.latent_pad) for p in plans] + [(0, 0)], mode="wrap")
