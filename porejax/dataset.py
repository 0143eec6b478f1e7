"""Training data: label volumes -> device-resident phase indices -> crops sampled inside the jitted step.

The training volumes are stored once on the device(s) as uint8 phase indices (V, X, Y, Z), padded to a
common shape when they differ. A batch of crops is a pure function of (arrays, key, batch index):
`sample_batch` draws the crop origins (`batch_draws`), slices the crops with `lax.dynamic_slice`,
one-hot encodes them and optionally applies a random symmetry of the cube (`crops_at`, which a device
runs on its own share of the batch), all inside the jitted training step (no host pipeline).

Modes:
- "random": every crop position of every volume equally likely (volumes weighted by their number of
  positions), a fresh draw per batch;
- "strided": the paper's epochs: the crops on a grid of stride `stride` (8 in the paper) in every
  volume, visited in a fresh random order each epoch; batch i of the run is batch i mod n of epoch
  i // n (n = positions // batch size, the rest of each epoch is dropped).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap, read_volume, to_indices, validate_volume

MODES = ("random", "strided")


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """Static description of how crops are sampled (hashable: part of the compiled step's identity)."""

    crop: int
    batch_size: int
    n_phases: int
    shapes: tuple[tuple[int, int, int], ...]
    mode: str = "random"
    stride: int = 8
    augment: bool = False

    @property
    def positions(self) -> tuple[int, ...]:
        """Number of crop origins per volume (random mode: every voxel offset; strided: the grid)."""
        step = 1 if self.mode == "random" else self.stride
        return tuple(int(np.prod([(n - self.crop) // step + 1 for n in shape])) for shape in self.shapes)


def split_holdout(volume: np.ndarray, slices: int, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout): the last `slices` slices along `axis` are held out (views, no copy)."""
    volume = np.asarray(volume)
    n = volume.shape[axis]
    if not 0 <= slices < n:
        raise PorejaxError(f"cannot hold out {slices} of the {n} slices along {AXES[axis]}: choose 0..{n - 1}")
    cut = n - slices
    return (np.take(volume, np.arange(cut), axis=axis), np.take(volume, np.arange(cut, n), axis=axis))


def prepare(volumes: Sequence[np.ndarray], phase_map: PhaseMap, crop: int) -> tuple[np.ndarray, tuple]:
    """Label volumes -> (phase indices uint8 (V, X, Y, Z) zero-padded to a common shape, true shapes).

    Raises PorejaxError when a volume is smaller than the crop along any axis.
    """
    if not volumes:
        raise PorejaxError("no training volumes given: pass at least one --data volume")
    indices = []
    for i, volume in enumerate(volumes):
        what = f"training volume {i}" if len(volumes) > 1 else "training volume"
        volume = validate_volume(volume, max_phases=max(phase_map.n_phases, 2), what=what)
        if min(volume.shape) < crop:
            raise PorejaxError(
                f"{what} of shape {volume.shape} (after any holdout) is smaller than the "
                f"model's {crop}^3 crop: use a larger volume or a smaller --holdout (the preset sets "
                "the crop: paper 64, cpu and tiny 32)"
            )
        indices.append(to_indices(volume, phase_map))
    shapes = tuple(tuple(int(s) for s in v.shape) for v in indices)
    common = tuple(max(s[a] for s in shapes) for a in range(3))
    stack = np.zeros((len(indices),) + common, np.uint8)
    for i, v in enumerate(indices):
        stack[i, : v.shape[0], : v.shape[1], : v.shape[2]] = v
    return stack, shapes


def strided_origins(shapes: Sequence[Sequence[int]], crop: int, stride: int) -> np.ndarray:
    """All crop origins (volume, x, y, z) on a grid of `stride` voxels: int32 (N, 4)."""
    rows = []
    for v, shape in enumerate(shapes):
        ranges = [range(0, n - crop + 1, stride) for n in shape]
        rows.extend((v, x, y, z) for x, y, z in itertools.product(*ranges))
    return np.asarray(rows, np.int32).reshape(-1, 4)


def device_arrays(stack: np.ndarray, spec: CropSpec) -> dict[str, np.ndarray]:
    """The arrays `sample_batch` needs (host numpy; the trainer places them on the devices)."""
    arrays = {
        "indices": stack,
        "max_origin": np.asarray([[n - spec.crop for n in s] for s in spec.shapes], np.int32),
        "log_weights": np.log(np.asarray(spec.positions, np.float32)),
    }
    if spec.mode == "strided":
        origins = strided_origins(spec.shapes, spec.crop, spec.stride)
        if len(origins) < spec.batch_size:
            raise PorejaxError(
                f"strided sampling gives {len(origins)} crops, fewer than the batch size "
                f"{spec.batch_size}: use a smaller stride, a larger volume or random sampling"
            )
        arrays["origins"] = origins
    return arrays


def check_spec(spec: CropSpec) -> None:
    if spec.mode not in MODES:
        raise PorejaxError(f"sampling mode must be one of {MODES}, got {spec.mode!r}")
    if spec.stride < 1:
        raise PorejaxError(f"stride must be a positive number of voxels, got {spec.stride}")


def crop_origins(
    arrays: dict, spec: CropSpec, key: jax.Array, data_key: jax.Array, batch_index: jax.Array
) -> jax.Array:
    """Crop origins (B, 4) int32: (volume, x, y, z) of batch number `batch_index`."""
    arrays = jax.tree_util.tree_map(jnp.asarray, arrays)
    b = spec.batch_size
    if spec.mode == "strided":
        origins = arrays["origins"]
        per_epoch = origins.shape[0] // b
        epoch, i = batch_index // per_epoch, batch_index % per_epoch
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), origins.shape[0])
        return origins[jax.lax.dynamic_slice_in_dim(order, i * b, b)]
    k_vol, k_pos = jax.random.split(key)
    vol = jax.random.categorical(k_vol, arrays["log_weights"], shape=(b,)).astype(jnp.int32)
    pos = jax.random.randint(k_pos, (b, 3), 0, arrays["max_origin"][vol] + 1, jnp.int32)
    return jnp.concatenate([vol[:, None], pos], axis=1)


def _cube_symmetry(x: jax.Array, key: jax.Array) -> jax.Array:
    """A uniformly random one of the 48 symmetries of the cube (axis permutation + flips) of x (S, S, S, C)."""
    k_perm, k_flip = jax.random.split(key)
    perms = list(itertools.permutations(range(3)))
    x = jax.lax.switch(
        jax.random.randint(k_perm, (), 0, len(perms)), [lambda v, p=p: jnp.transpose(v, p + (3,)) for p in perms], x
    )
    flips = jax.random.bernoulli(k_flip, 0.5, (3,))
    for axis in range(3):
        x = jnp.where(flips[axis], jnp.flip(x, axis), x)
    return x


def batch_draws(
    arrays: dict, spec: CropSpec, key: jax.Array, data_key: jax.Array, batch_index: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The random draws of batch number `batch_index`: crop origins (B, 4) int32 and one augmentation key
    per crop (B, 2) uint32. A few numbers per crop: every process of a multi-process run draws them all."""
    k_origin, k_aug = jax.random.split(key)
    return crop_origins(arrays, spec, k_origin, data_key, batch_index), jax.random.split(k_aug, spec.batch_size)


def crops_at(arrays: dict, spec: CropSpec, origins: jax.Array, keys: jax.Array) -> jax.Array:
    """One-hot crops float32 (b, S, S, S, n_phases), S = spec.crop, at `origins` (b, 4), each given a random
    symmetry of the cube from its key (b, 2) when `spec.augment`; b is any share of the batch."""
    arrays = jax.tree_util.tree_map(jnp.asarray, arrays)
    size = (spec.crop,) * 3
    crops = jax.vmap(lambda o: jax.lax.dynamic_slice(arrays["indices"], tuple(o), (1,) + size)[0])(origins)
    x = jax.nn.one_hot(crops, spec.n_phases, dtype=jnp.float32)
    return jax.vmap(_cube_symmetry)(x, keys) if spec.augment else x


def sample_batch(
    arrays: dict, spec: CropSpec, key: jax.Array, data_key: jax.Array, batch_index: jax.Array
) -> jax.Array:
    """One-hot crops float32 (B, S, S, S, n_phases), S = spec.crop, for batch number `batch_index`.

    `key` drives random sampling and augmentation; `data_key` (fixed for a run) orders strided epochs.
    """
    arrays = jax.tree_util.tree_map(jnp.asarray, arrays)
    return crops_at(arrays, spec, *batch_draws(arrays, spec, key, data_key, batch_index))


def load_volumes(
    paths: Sequence[str | os.PathLike], names: Sequence[str] | None = None, voxel_size: float | None = None
) -> tuple[list[np.ndarray], PhaseMap]:
    """Read label volumes (TIFF/.npy) and the PhaseMap of all their label values together."""
    volumes = [read_volume(p) for p in paths]
    labels = sorted(set().union(*(np.unique(v).tolist() for v in volumes)))
    return volumes, PhaseMap(tuple(labels), None if names is None else tuple(names), voxel_size)
