"""Generation from a checkpoint: pure, periodic in any subset of axes, any size, chunked and streamed.

Generation is a pure function of (generator params, frozen normalisation statistics, latent): BatchNorm
uses the statistics stored in the checkpoint, so a volume does not depend on batching or chunking.

- Periodic (circular padding in every layer) along any subset of x, y, z: side exactly u a (u = period
  unit, 16 for the paper), seamless; it equals the central crop of the zero-padded generator applied to
  the latent tiled 3x3x3.
- Non-periodic axes of a generator trained on periodic latents (the default training): the interior only,
  side u (a - 2 h) for a latent of side a (h = `periodic_halo`, the receptive field in latent voxels): each
  voxel is computed from latent values that all exist, so it is a sample of the stationary structure the
  generator learnt, exactly as in the interior of a periodic volume; no voxel sees a zero-padded face, which
  such a generator never saw in training.
- Non-periodic axes of a generator trained on the paper's 1^3 latents (zero padding, `--latent point`,
  imported PyTorch generators): side u (a + 3) (64 + 16 (a - 1) for the paper), faces included, as trained.
- `size` (`--size N`) centre-crops what a latent gives; `latent_size_for(N)` is the smallest latent that
  gives N voxels.
- Chunked: the generator is local, so a volume is generated tile by tile from latent windows with a halo
  (the backward receptive field of the tile), stitched exactly, and streamed to TIFF slab by slab along
  x; every layer keeps only the part of its output the tile needs (`layer_crops`), so the halo costs
  little; peak memory is set by the tile side and the volume's cross-section, not by its volume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax import checkpoint, latents, store
from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.models import Generator, ModelConfig
from porejax.nn.layers import PREPARED, prepare_transpose_kernel
from porejax.standing import BATCHES, standing_statistics
from porejax.volume import PhaseMap, TiffStackWriter, decode

DEFAULT_CHUNK = 256  # output voxels per tile side when a volume is too large to generate in one piece
ONE_PIECE = 384  # largest side generated in one piece by default (paper network: ~5 GB peak, faster than tiles)
_BATCH = 8  # latents per jitted call when generating a batch


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


def _as_triple(size: int | Sequence[int], what: str) -> tuple[int, int, int]:
    sizes = (size,) * 3 if np.ndim(size) == 0 else tuple(size)
    if len(sizes) != 3 or any(int(s) != s or s < 1 for s in sizes):
        raise PorejaxError(f"{what} must be a positive integer or three of them, got {size!r}")
    return tuple(int(s) for s in sizes)  # type: ignore[return-value]


@functools.partial(jax.jit, static_argnames="config")
def _prepared_kernels(params: dict, config: ModelConfig) -> dict:
    """{"deconv<i>": {"kernel": sub-pixel form}} of the generator's transposed convolutions."""
    return {
        f"deconv{i}": {"kernel": prepare_transpose_kernel(params[f"deconv{i}"]["kernel"], stride, pad)}
        for i, (_, kernel, stride, pad) in enumerate(config.generator_layers)
        if kernel % stride == 0
    }


@functools.partial(jax.jit, static_argnames=("config", "lengths"))
def _kept_probabilities(variables: dict, z: jnp.ndarray, config: ModelConfig, lengths: tuple, starts: jnp.ndarray):
    """The zero-padded generator on latent windows z (B, ...), keeping per layer the crops (lengths, starts)."""
    return Generator(config).apply(variables, z, train=False, keep=(lengths, starts))


@functools.partial(jax.jit, static_argnames=("config", "lengths"))
def _indices_and_confidence(variables: dict, z: jnp.ndarray, config: ModelConfig, lengths: tuple, starts: jnp.ndarray):
    p = _kept_probabilities(variables, z, config, lengths, starts)[0]
    return jnp.argmax(p, axis=-1).astype(jnp.uint8), jnp.max(p, axis=-1)


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
class _AxisPlan:
    """How one axis of an output volume maps to the zero-padded generator on a (padded) latent."""

    size: int  # output voxels
    offset: int  # output voxel 0 = this voxel of the zero-padded generator on the padded latent
    latent_pad: int  # circular latent padding (periodic axes)
    latent_size: int  # padded latent length


def output_side(config: ModelConfig, latent_side: int, periodic: bool, interior: bool) -> int:
    """Output voxels along one axis for a latent of `latent_side`: u a periodic, u (a - 2 h) for the
    interior of a non-periodic axis (`interior`), u (a + 3) with zero-padded faces otherwise."""
    if periodic or not interior:
        return config.output_side(latent_side, periodic)
    return config.period_unit * (latent_side - 2 * periodic_halo(config))


def _plan(
    config: ModelConfig,
    latent_shape: Sequence[int],
    periodic: Sequence[bool],
    size: Sequence[int] | None,
    interior: bool,
) -> list[_AxisPlan]:
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
            if n != full:
                raise PorejaxError(f"periodic output along {AXES[axis]} has exactly {full} voxels for latent {a}")
            plans.append(_AxisPlan(n, u * h + 3 * u // 2, h, a + 2 * h))
        else:
            first = u * h + 3 * u // 2 if interior else 0  # the first voxel whose receptive field is all latent
            plans.append(_AxisPlan(n, first + (full - n) // 2, 0, a))
    return plans


def default_chunk(plans: Sequence[_AxisPlan]) -> int:
    """Tile side when none is given: one piece up to ONE_PIECE voxels per axis, else DEFAULT_CHUNK.
    Every layer computes only what the tile needs (`layer_crops`), so tiles cost little more per voxel
    than one piece (measured: 320^3 in 8 tiles 17.2 s vs one piece 12.0 s) at a bounded peak memory."""
    side = max(p.size for p in plans)
    return side if side <= ONE_PIECE else DEFAULT_CHUNK


def _tiles(plan: _AxisPlan, chunk: int, config: ModelConfig) -> list[tuple[int, int, int, int]]:
    """(t0, t1, l0, l1) per tile along one axis: output range and the latent window it needs."""
    tiles = []
    for t0 in range(0, plan.size, chunk):
        t1 = min(plan.size, t0 + chunk)
        l0, l1 = latent_window(config, t0 + plan.offset, t1 + plan.offset)
        tiles.append((t0, t1, max(0, l0), min(plan.latent_size, l1)))
    return tiles


@dataclasses.dataclass(frozen=True)
class FrozenGenerator:
    """A trained (or freshly initialised) generator with frozen normalisation statistics and its PhaseMap."""

    config: ModelConfig
    phase_map: PhaseMap
    variables: dict
    step: int | None = None
    # "periodic" or "point" (`porejax.latents`); a checkpoint records it, and one that does not (`porejax init`,
    # an imported PyTorch generator) holds the paper's generator, trained on 1^3 latents
    training_latent: str = latents.UNRECORDED

    # --- latents and sizes ---------------------------------------------------------------------
    @property
    def interior_only(self) -> bool:
        """Whether non-periodic axes keep only the interior (see the module docstring): true for generators
        trained on periodic latents, which never saw a zero-padded face."""
        return self.training_latent == "periodic"

    def latent(self, seed: int = 0, size: int | Sequence[int] = 1) -> np.ndarray:
        """Standard-normal latent (A, A, A, latent_channels) float32; `size` may be a 3-tuple."""
        return latents.from_seed(seed, _as_triple(size, "latent size") + (self.config.latent_channels,))

    def latent_size_for(self, size: int | Sequence[int], periodic: str | Sequence[bool] = "") -> tuple[int, int, int]:
        """Smallest latent side per axis whose output covers `size` voxels (periodic axes: exactly)."""
        sizes, flags, u = _as_triple(size, "size"), parse_periodic(periodic), self.config.period_unit
        latent = []
        for axis, (n, circ) in enumerate(zip(sizes, flags)):
            if circ and n % u:
                choices = " or ".join(str(c) for c in sorted({max(u, n // u * u), (n // u + 1) * u}))
                raise PorejaxError(
                    f"a periodic volume needs a size that is a multiple of {u} (the generator's "
                    f"period unit) along {AXES[axis]}; got {n}: use {choices}"
                )
            if circ:
                latent.append(n // u)
            elif self.interior_only:
                latent.append(math.ceil(n / u) + 2 * periodic_halo(self.config))
            else:
                latent.append(max(1, math.ceil(n / u) - 3))
        return tuple(latent)  # type: ignore[return-value]

    def output_shape(self, latent_shape: Sequence[int], periodic: str | Sequence[bool] = "") -> tuple[int, int, int]:
        """(D, H, W) a latent of spatial shape `latent_shape` gives (before any `size` crop)."""
        return tuple(p.size for p in self._plans(latent_shape, parse_periodic(periodic), None))  # type: ignore

    def output_window(
        self, latent_shape: Sequence[int], periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None
    ) -> tuple[slice, slice, slice]:
        """The slices of `Generator(config).apply(variables, z, periodic=flags)` (circular padding on periodic
        axes, zero padding elsewhere) that form the volume this generator gives for z: everything on
        periodic axes, the interior (or centre crop) elsewhere. `probability_fn` computes only that part."""
        plans = self._plans(latent_shape, parse_periodic(periodic), size)
        return tuple(slice(0, p.size) if p.latent_pad else slice(p.offset, p.offset + p.size) for p in plans)  # type: ignore[return-value]

    def _plans(self, latent_shape: Sequence[int], flags: tuple[bool, ...], size) -> list[_AxisPlan]:
        return _plan(
            self.config, latent_shape, flags, None if size is None else _as_triple(size, "size"), self.interior_only
        )

    def _check_latent(self, z) -> tuple[np.ndarray, bool]:
        z = np.asarray(z, dtype=np.float32)
        batched = z.ndim == 5
        if z.ndim not in (4, 5) or z.shape[-1] != self.config.latent_channels:
            raise PorejaxError(
                f"latent must be (A, A, A, {self.config.latent_channels}) or batched "
                f"(B, A, A, A, {self.config.latent_channels}), got {z.shape}; use g.latent()"
            )
        if not np.all(np.isfinite(z)):
            raise PorejaxError("latent contains NaN or infinite values")
        return (z if batched else z[None]), batched

    def with_stationary_statistics(
        self, latent_size: int | None = None, batches: int = BATCHES, batch_size: int = 1, seed: int = 0
    ) -> FrozenGenerator:
        """This generator with BatchNorm statistics re-estimated on `batches` batches of `batch_size` periodic
        latents of side `latent_size` (default: twice the training side), by `porejax.standing` (which says
        why periodic latents of that side).

        Needed for generators trained on 1^3 latents (`--latent point`, imported PyTorch generators): their
        statistics describe activations dominated by the zero-padded boundary, while inside a larger volume
        (or any periodic one) every activation sums over the whole kernel, so its scale differs and the
        phase fractions drift. (The paper's code gets a similar effect by leaving BatchNorm in training mode
        at generation time, which makes a volume depend on its own size and batch.) Deterministic in `seed`;
        returns a new FrozenGenerator (parameters shared).
        """
        params = self.variables["params"]
        stats = standing_statistics(
            self.config,
            params,
            self.variables["batch_stats"],
            jax.random.PRNGKey(int(seed)),
            side=latent_size,
            batch=batch_size,
            batches=batches,
        )
        return dataclasses.replace(self, variables={"params": params, "batch_stats": stats})

    @functools.cached_property
    def _generation_variables(self) -> dict:
        """`variables` on the device, with the kernels prepared for the layers' products once (not per call)."""
        variables = jax.device_put(self.variables)
        return {**variables, PREPARED: _prepared_kernels(variables["params"], self.config)}

    def _tile(self, plans: Sequence[_AxisPlan], tiles) -> tuple[tuple, tuple, np.ndarray]:
        """(latent slices, static kept lengths per layer and axis, kept starts (layers, 3)) of one tile:
        `tiles` holds one (t0, t1, l0, l1) per axis (see `_tiles`)."""
        u = self.config.period_unit
        crops = np.array(
            [
                layer_crops(self.config, t[3] - t[2], t[0] + p.offset - u * t[2], t[1] + p.offset - u * t[2])
                for t, p in zip(tiles, plans)
            ]
        )
        window = tuple(slice(t[2], t[3]) for t in tiles)
        return window, tuple(map(tuple, crops[..., 1].T.tolist())), np.asarray(crops[..., 0].T, np.int32)

    def probability_fn(
        self, latent_shape: Sequence[int], periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None
    ):
        """A pure, differentiable function z (A, A, A, C) -> phase probabilities (D, H, W, n_phases) of the
        volume this generator gives (`probabilities`), computing only what that volume needs (for
        gradients with respect to the latent, e.g. `porejax.design`)."""
        flags = parse_periodic(periodic)
        plans = self._plans(_as_triple(latent_shape, "latent shape"), flags, size)
        window, lengths, starts = self._tile(plans, [_tiles(p, p.size, self.config)[0] for p in plans])
        pad = [(p.latent_pad, p.latent_pad) for p in plans] + [(0, 0)]
        variables, config = self._generation_variables, self.config

        def fn(z):
            padded = jnp.pad(jnp.asarray(z, jnp.float32), pad, mode="wrap")
            return _kept_probabilities(variables, padded[window][None], config, lengths, jnp.asarray(starts))[0]

        return fn

    # --- one-shot generation -------------------------------------------------------------------
    def probabilities(
        self, z, periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None
    ) -> np.ndarray:
        """Phase probabilities float32 (D, H, W, n_phases) for a latent (A, A, A, C); batched in, batched out."""
        zb, batched = self._check_latent(z)
        plans = self._plans(zb.shape[1:4], parse_periodic(periodic), size)
        window, lengths, starts = self._tile(plans, [_tiles(p, p.size, self.config)[0] for p in plans])
        padded = _pad_latents(zb, plans)[(slice(None),) + window]
        out = np.concatenate(
            [
                np.asarray(
                    _kept_probabilities(
                        self._generation_variables,
                        jnp.asarray(padded[i : i + _BATCH]),
                        self.config,
                        lengths,
                        jnp.asarray(starts),
                    )
                )
                for i in range(0, len(zb), _BATCH)
            ]
        )
        return out if batched else out[0]

    def labels(self, z, periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None) -> np.ndarray:
        """Label volume (D, H, W) with the ORIGINAL label values (argmax over phases)."""
        return decode(self.probabilities(z, periodic, size), self.phase_map)

    def confidence(self, z, periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None) -> np.ndarray:
        """Confidence map (D, H, W) float32: the maximum phase probability of each voxel (paper S9)."""
        return self.probabilities(z, periodic, size).max(axis=-1)

    # --- chunked generation --------------------------------------------------------------------
    def _layout(self, z, periodic, size, chunk) -> tuple[np.ndarray, list[_AxisPlan], int]:
        """(padded latent (1, ...), per-axis plans, tile side) of a chunked generation."""
        zb, batched = self._check_latent(z)
        if batched:
            raise PorejaxError("chunked generation takes one latent (A, A, A, C), not a batch")
        plans = self._plans(zb.shape[1:4], parse_periodic(periodic), size)
        chunk = default_chunk(plans) if chunk is None else chunk
        if int(chunk) != chunk or chunk < 1:
            raise PorejaxError(f"chunk must be a positive number of voxels, got {chunk}")
        return _pad_latents(zb, plans), plans, int(chunk)

    def tiles(
        self,
        z,
        periodic: str | Sequence[bool] = "",
        size: int | Sequence[int] | None = None,
        chunk: int | None = None,
        part: tuple[int, int] | None = None,
    ) -> Iterator[tuple[tuple[int, int, int], np.ndarray, np.ndarray]]:
        """Yield (start voxel (x, y, z), labels, confidence) per tile (d, h, w), row of x tiles by row.

        The tiles cover the volume `slabs` yields. `part` = (i, n): only the tiles of the i-th (0-based)
        of n slabs along x, each slab a run of whole x tile rows (sizes differ by at most one row).
        """
        padded, plans, chunk = self._layout(z, periodic, size, chunk)
        lut = np.asarray(self.phase_map.labels, dtype=self.phase_map.label_dtype)
        tiles = [_tiles(p, chunk, self.config) for p in plans]
        if part is not None:
            i, n = part
            if not 0 <= i < n <= len(tiles[0]):
                raise PorejaxError(
                    f"part {i + 1}/{n} does not exist: the volume has {len(tiles[0])} rows of "
                    f"{chunk}-voxel tiles along x, so 1 <= I <= N <= {len(tiles[0])} "
                    "(a smaller --chunk allows more parts)"
                )
            tiles[0] = tiles[0][i * len(tiles[0]) // n : (i + 1) * len(tiles[0]) // n]
        for tx, ty, tz in itertools.product(*tiles):
            window, lengths, starts = self._tile(plans, (tx, ty, tz))
            idx, c = _indices_and_confidence(
                self._generation_variables,
                jnp.asarray(padded[(slice(None),) + window]),
                self.config,
                lengths,
                jnp.asarray(starts),
            )
            yield (tx[0], ty[0], tz[0]), lut[np.asarray(idx)], np.asarray(c)

    def slabs(
        self, z, periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None, chunk: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (labels, confidence) slabs (d, H, W) along x, tile by tile, identical to one-shot output.

        `size`: output voxels per axis (default: the latent's full output; non-periodic axes centre-crop).
        `chunk`: tile side in output voxels (default: `default_chunk`, one piece up to 384^3, else tiles of
        256; peak memory about 5 GB for the paper's generator either way).
        """
        _, plans, chunk = self._layout(z, periodic, size, chunk)
        shape = tuple(p.size for p in plans)
        rows = itertools.groupby(self.tiles(z, periodic, size, chunk), key=lambda tile: tile[0][0])
        for x0, row in rows:
            labels = np.empty((min(chunk, shape[0] - x0),) + shape[1:], self.phase_map.label_dtype)
            conf = np.empty(labels.shape, np.float32)
            for (_, y0, z0), lab, c in row:
                labels[:, y0 : y0 + lab.shape[1], z0 : z0 + lab.shape[2]] = lab
                conf[:, y0 : y0 + lab.shape[1], z0 : z0 + lab.shape[2]] = c
            yield labels, conf

    def generate(
        self, z, periodic: str | Sequence[bool] = "", size=None, chunk: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidence) in memory, generated tile by tile (see `slabs`)."""
        parts = list(self.slabs(z, periodic, size, chunk))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def write(
        self,
        path: str | os.PathLike,
        z,
        periodic: str | Sequence[bool] = "",
        size=None,
        chunk: int | None = None,
        confidence_path: str | os.PathLike | None = None,
        part: tuple[int, int] | None = None,
        attributes: dict | None = None,
    ) -> tuple[int, int, int]:
        """Stream the label volume (and optionally the confidence map, float32) to TIFF, or tile by tile to
        a Zarr store when `path` ends in .zarr (see `write_store`); returns the volume's shape."""
        if store.is_store(path):
            return self.write_store(path, z, periodic, size, chunk, confidence_path, part, attributes)
        if part is not None:
            raise PorejaxError(
                f"--part needs a Zarr store (--out VOL.zarr), not {path}: parts of one TIFF "
                "cannot be written independently"
            )
        flags = parse_periodic(periodic)
        zb, _ = self._check_latent(z)
        shape = tuple(p.size for p in self._plans(zb.shape[1:4], flags, size))
        voxel = self.phase_map.voxel_size
        writers = [TiffStackWriter(path, shape, self.phase_map.label_dtype, voxel)]
        if confidence_path is not None:
            writers.append(TiffStackWriter(confidence_path, shape, np.float32, voxel))
        with contextlib.ExitStack() as stack:
            for writer in writers:
                stack.enter_context(writer)
            for slab in self.slabs(z, flags, size, chunk):
                for writer, block in zip(writers, slab):
                    writer.write(block)
        return shape  # type: ignore[return-value]

    def write_store(
        self,
        path: str | os.PathLike,
        z,
        periodic: str | Sequence[bool] = "",
        size=None,
        chunk: int | None = None,
        confidence_path: str | os.PathLike | None = None,
        part: tuple[int, int] | None = None,
        attributes: dict | None = None,
    ) -> tuple[int, int, int]:
        """Write the volume tile by tile into the Zarr store `path` (chunks = tiles; memory set by one tile),
        only the tiles of slab `part` = (i, n) along x when given (n jobs fill one store; any order).

        The store's attributes hold the PhaseMap, this generator's step and `attributes` (e.g. seed,
        periodic axes, size). The confidence map, if wanted, goes to a store too.
        """
        _, plans, chunk = self._layout(z, periodic, size, chunk)
        shape = tuple(p.size for p in plans)
        chunks = tuple(min(chunk, n) for n in shape)
        meta = {"phase_map": self.phase_map.to_dict(), "generation": {"step": self.step, **(attributes or {})}}
        labels = store.create(path, shape, self.phase_map.label_dtype, chunks, meta)
        outputs = [labels]
        if confidence_path is not None:
            if not store.is_store(confidence_path):
                raise PorejaxError(
                    f"with a Zarr store --out the confidence map goes to a store too: name it "
                    f"*.zarr, not {confidence_path}"
                )
            outputs.append(store.create(confidence_path, shape, np.float32, chunks, meta))
        for start, *blocks in self.tiles(z, periodic, size, chunk, part):
            for out, block in zip(outputs, blocks):
                store.write_block(out, start, block)
        return shape  # type: ignore[return-value]


def _pad_latents(zb: np.ndarray, plans: Sequence[_AxisPlan]) -> np.ndarray:
    """Latents (B, A, A, A, C) padded circularly by each periodic axis's halo."""
    return np.pad(zb, [(0, 0)] + [(p.latent_pad, p.latent_pad) for p in plans] + [(0, 0)], mode="wrap")


def load_generator(checkpoint_dir: str | os.PathLike, step: int | None = None) -> FrozenGenerator:
    """The frozen generator of a checkpoint directory (newest step unless `step` is given)."""
    meta, variables, step = checkpoint.restore_generator(checkpoint_dir, step)
    config, phase_map = checkpoint.model_and_phases(meta)
    trained_on = meta.get("train", {}).get("latent", latents.UNRECORDED)
    return FrozenGenerator(config, phase_map, variables, step, trained_on)
