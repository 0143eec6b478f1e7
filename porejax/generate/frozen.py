"""FrozenGenerator: a generator with frozen BatchNorm statistics, its latents and sizes, and generation in
one piece, tile by tile, streamed or differentiable (see `porejax.generate` for what each size means)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax import checkpoint, latents, programs
from porejax.errors import PorejaxError
from porejax.generate import output
from porejax.generate.plan import (
    AxisPlan,
    as_triple,
    default_chunk,
    latent_sides,
    min_periodic_latent,
    one_piece,
    pad_latents,
    parse_periodic,
    plan,
    tile_program,
    axis_tiles,
)
from porejax.models import Generator, ModelConfig
from porejax.nn.layers import PREPARED, prepare_transpose_kernel
from porejax.standing import BATCHES, standing_statistics
from porejax.volume import PhaseMap, decode

_BATCH = 8  # latents per jitted call when generating a batch


def _prepared_kernels(params: dict, config: ModelConfig) -> dict:
    """{"deconv<i>": {"kernel": sub-pixel form}} of the generator's transposed convolutions, made on the host
    (numpy permutations: no program to compile before the first volume)."""
    return {
        f"deconv{i}": {"kernel": prepare_transpose_kernel(np.asarray(params[f"deconv{i}"]["kernel"]), stride, pad)}
        for i, (_, kernel, stride, pad) in enumerate(config.generator_layers)
        if kernel % stride == 0
    }


@functools.partial(jax.jit, static_argnames=("config", "lengths"))
def _kept_probabilities(variables: dict, z: jnp.ndarray, starts: jnp.ndarray, config: ModelConfig, lengths: tuple):
    """The zero-padded generator on latent windows z (B, ...), keeping per layer the crops (lengths, starts)."""
    return Generator(config).apply(variables, z, train=False, keep=(lengths, starts))


@functools.partial(jax.jit, static_argnames=("config", "lengths"))
def _indices_and_confidence(variables: dict, z: jnp.ndarray, starts: jnp.ndarray, config: ModelConfig, lengths: tuple):
    p = _kept_probabilities(variables, z, starts, config, lengths)[0]
    return jnp.argmax(p, axis=-1).astype(jnp.uint8), jnp.max(p, axis=-1)


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
        """Whether non-periodic axes keep only the interior (see `porejax.generate`): true for generators
        trained on periodic latents, which never saw a zero-padded face."""
        return self.training_latent == "periodic"

    @property
    def smallest_periodic_side(self) -> int:
        """Voxels of the smallest periodic side this generator makes (`porejax.generate.min_periodic_latent`)."""
        return self.config.period_unit * min_periodic_latent(self.config, self.interior_only)

    def latent(self, seed: int = 0, size: int | Sequence[int] = 1) -> np.ndarray:
        """Standard-normal latent (A, A, A, latent_channels) float32; `size` may be a 3-tuple."""
        return latents.from_seed(seed, as_triple(size, "latent size") + (self.config.latent_channels,))

    def latent_size_for(self, size: int | Sequence[int], periodic: str | Sequence[bool] = "") -> tuple[int, int, int]:
        """Smallest latent side per axis whose output covers `size` voxels (periodic axes: exactly)."""
        return latent_sides(self.config, as_triple(size, "size"), parse_periodic(periodic), self.interior_only)

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

    def _plans(self, latent_shape: Sequence[int], flags: tuple[bool, ...], size) -> list[AxisPlan]:
        return plan(
            self.config, latent_shape, flags, None if size is None else as_triple(size, "size"), self.interior_only
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
        return jax.device_put({**self.variables, PREPARED: _prepared_kernels(self.variables["params"], self.config)})

    def probability_fn(
        self, latent_shape: Sequence[int], periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None
    ):
        """A pure, differentiable function z (A, A, A, C) -> phase probabilities (D, H, W, n_phases) of the
        volume this generator gives (`probabilities`), computing only what that volume needs (for
        gradients with respect to the latent, e.g. `porejax.design`)."""
        flags = parse_periodic(periodic)
        plans = self._plans(as_triple(latent_shape, "latent shape"), flags, size)
        window, lengths, starts = one_piece(self.config, plans)
        pad = [(p.latent_pad, p.latent_pad) for p in plans] + [(0, 0)]
        variables, config = self._generation_variables, self.config

        def fn(z):
            padded = jnp.pad(jnp.asarray(z, jnp.float32), pad, mode="wrap")
            return _kept_probabilities(variables, padded[window][None], jnp.asarray(starts), config, lengths)[0]

        return fn

    # --- one-shot generation -------------------------------------------------------------------
    def probabilities(
        self, z, periodic: str | Sequence[bool] = "", size: int | Sequence[int] | None = None
    ) -> np.ndarray:
        """Phase probabilities float32 (D, H, W, n_phases) for a latent (A, A, A, C); batched in, batched out."""
        zb, batched = self._check_latent(z)
        plans = self._plans(zb.shape[1:4], parse_periodic(periodic), size)
        window, lengths, starts = one_piece(self.config, plans)
        padded = pad_latents(zb, plans)[(slice(None),) + window]
        out = np.concatenate(
            [
                np.asarray(
                    programs.run(
                        _kept_probabilities,
                        {"config": self.config, "lengths": lengths},
                        self._generation_variables,
                        padded[i : i + _BATCH],
                        starts,
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
    def layout(self, z, periodic, size, chunk) -> tuple[np.ndarray, list[AxisPlan], int]:
        """(padded latent (1, ...), per-axis plans, tile side) of a chunked generation."""
        zb, batched = self._check_latent(z)
        if batched:
            raise PorejaxError("chunked generation takes one latent (A, A, A, C), not a batch")
        plans = self._plans(zb.shape[1:4], parse_periodic(periodic), size)
        chunk = default_chunk(plans) if chunk is None else chunk
        if int(chunk) != chunk or chunk < 1:
            raise PorejaxError(f"chunk must be a positive number of voxels, got {chunk}")
        return pad_latents(zb, plans), plans, int(chunk)

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
        padded, plans, chunk = self.layout(z, periodic, size, chunk)
        lut = np.asarray(self.phase_map.labels, dtype=self.phase_map.label_dtype)
        per_axis = [axis_tiles(p, chunk, self.config) for p in plans]
        if part is not None:
            i, n = part
            if not 0 <= i < n <= len(per_axis[0]):
                raise PorejaxError(
                    f"part {i + 1}/{n} does not exist: the volume has {len(per_axis[0])} rows of "
                    f"{chunk}-voxel tiles along x, so 1 <= I <= N <= {len(per_axis[0])} "
                    "(a smaller --chunk allows more parts)"
                )
            per_axis[0] = per_axis[0][i * len(per_axis[0]) // n : (i + 1) * len(per_axis[0]) // n]
        for tx, ty, tz in itertools.product(*per_axis):
            window, lengths, starts = tile_program(self.config, plans, (tx, ty, tz))
            idx, c = programs.run(
                _indices_and_confidence,
                {"config": self.config, "lengths": lengths},
                self._generation_variables,
                padded[(slice(None),) + window],
                starts,
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
        _, plans, chunk = self.layout(z, periodic, size, chunk)
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

    # write(path, z, periodic="", size=None, chunk=None, confidence_path=None, part=None, attributes=None):
    # TIFF or Zarr, streamed (`porejax.generate.output.write`)
    write = output.write


def load_generator(checkpoint_dir: str | os.PathLike, step: int | None = None) -> FrozenGenerator:
    """The frozen generator of a checkpoint directory (newest step unless `step` is given)."""
    meta, variables, step = checkpoint.restore_generator(checkpoint_dir, step)
    config, phase_map = checkpoint.model_and_phases(meta)
    trained_on = meta.get("train", {}).get("latent", latents.UNRECORDED)
    return FrozenGenerator(config, phase_map, variables, step, trained_on)
