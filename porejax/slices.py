"""Training from 2D images: label images per plane, real slice crops, slices of generated volumes.

A slice discriminator judges 2D sections of 3D volumes (Kench & Cooper 2021, SliceGAN). The plane normal
to an axis of a volume V (x, y, z = array axes 0, 1, 2) has these in-plane array axes, and an image given
for that plane is read the same way (rows first):

    normal to x: V[i, :, :] -> image axes (y, z)
    normal to y: V[:, j, :] -> image axes (x, z)
    normal to z: V[:, :, k] -> image axes (x, y)

Discriminator layouts (`LAYOUTS`, `TrainConfig.discriminator`):
- "slices": one discriminator per axis, "x", "y" and "z", each fed the real images of its plane and the
  slices normal to its axis of every generated volume (anisotropic material: three images, or the slices
  of 3D volumes);
- "shared-slices": one discriminator, "xyz", fed the generated slices along all three axes, each axis
  against its own draw of the same real images (isotropic material: one image, or several of one plane).

Image sets (`ImageSets`) map each discriminator to a list of label stacks (N, H, W): N images of one
plane, with the original label values. Real crops are drawn inside the jitted step: every crop position
of every image equally likely, as `porejax.dataset`'s random mode.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError
from porejax.volume import DEFAULT_MAX_PHASES, PhaseMap, read_array, to_indices, validate_volume

LAYOUTS = ("slices", "shared-slices")
AXIS_KEYS = ("x", "y", "z")
SHARED_KEY = "xyz"
ImageSets = Mapping[str, Sequence[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SliceSpec:
    """Static description of the real and generated slices of a step (hashable: part of the step's identity).

    crop: slice side S; batch_size: generated volumes per step; per_volume: slices per generated volume
    and axis (S: all of them); shapes: per discriminator key (in `keys` order), the (H, W) of its images.
    Each discriminator pass sees batch_size * per_volume generated and as many real slices.
    """

    crop: int
    batch_size: int
    per_volume: int
    n_phases: int
    keys: tuple[str, ...]
    shapes: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def count(self) -> int:
        """Slices per discriminator pass."""
        return self.batch_size * self.per_volume

    def pairs(self) -> tuple[tuple[str, int], ...]:
        """(discriminator key, volume axis 0..2) for each of the three slicing directions."""
        if self.keys == (SHARED_KEY,):
            return tuple((SHARED_KEY, axis) for axis in range(3))
        return tuple(zip(AXIS_KEYS, range(3)))


def discriminator_keys(layout: str) -> tuple[str, ...]:
    if layout not in LAYOUTS:
        raise PorejaxError(f"slice discriminator layout must be one of {LAYOUTS}, got {layout!r}")
    return (SHARED_KEY,) if layout == "shared-slices" else AXIS_KEYS


def as_image_stack(image, what: str = "image", max_phases: int = DEFAULT_MAX_PHASES) -> np.ndarray:
    """A 2D label image (H, W), or a stack (N, H, W) of images of one plane -> validated stack (N, H, W)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4:
        raise PorejaxError(
            f"{what} of shape {arr.shape} looks like an RGB(A) image: save a single-channel "
            "image of integer phase labels (one value per phase)"
        )
    if arr.ndim not in (2, 3):
        raise PorejaxError(
            f"{what} has {arr.ndim} dimensions {arr.shape}, expected a 2D label image (H, W) or a "
            "stack (N, H, W) of images of one plane"
        )
    return validate_volume(arr[None] if arr.ndim == 2 else arr, max_phases=max_phases, what=what)


def read_images(path: str | os.PathLike, max_phases: int = DEFAULT_MAX_PHASES) -> np.ndarray:
    """Read a 2D label image or a stack of images of one plane (TIFF/.npy) -> validated stack (N, H, W)."""
    return as_image_stack(read_array(path), str(path), max_phases)


def volume_slices(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The slices of a 3D volume (X, Y, Z) normal to each axis, as image stacks with the module's axes:
    {"x": (X, Y, Z), "y": (Y, X, Z), "z": (Z, X, Y)} (views, no copy)."""
    volume = np.asarray(volume)
    return {"x": volume, "y": volume.transpose(1, 0, 2), "z": volume.transpose(2, 0, 1)}


def image_sets(layout: str, volumes: Sequence[np.ndarray] = (), images: ImageSets | None = None) -> dict:
    """The image sets of `layout` from 3D `volumes` (their slices) or from 2D `images` (exactly one of the two).

    images: {"xyz": stacks} (isotropic) or {"x": ..., "y": ..., "z": ...} (each a list of stacks or arrays).
    """
    keys = discriminator_keys(layout)
    if bool(len(volumes)) == (images is not None):
        raise PorejaxError("give either 3D training volumes or 2D images for the slice discriminators, not both")
    if images is None:
        per_axis = [volume_slices(validate_volume(v, what=f"training volume {i}")) for i, v in enumerate(volumes)]
        return {key: [s for v in per_axis for s in ([v[key]] if key != SHARED_KEY else v.values())] for key in keys}
    if set(images) != set(keys):
        want = "one image set (--slices)" if keys == (SHARED_KEY,) else "an image for each of x, y and z"
        raise PorejaxError(f"{layout} discriminators need {want}, got images for {sorted(images)}")
    return {key: [as_image_stack(s, f"{key} image {i}") for i, s in enumerate(images[key])] for key in keys}


def phase_map_of(sets: ImageSets, names: Sequence[str] | None = None, voxel_size: float | None = None) -> PhaseMap:
    """The PhaseMap of all label values of the image sets; every stack must hold the same labels (a phase
    missing from one plane's images would be one its discriminator never saw)."""
    found = {(key, i): tuple(np.unique(s).tolist()) for key in sets for i, s in enumerate(sets[key])}
    labels = sorted(set().union(*found.values()))
    for (key, i), have in found.items():
        if list(have) != labels:
            raise PorejaxError(
                f"{key} image {i} has labels {list(have)} but the images together have {labels}: "
                "segment every image with the same phases and label values"
            )
    return PhaseMap(tuple(labels), None if names is None else tuple(names), voxel_size)


def prepare(
    sets: ImageSets, phase_map: PhaseMap, crop: int, batch_size: int, per_volume: int
) -> tuple[SliceSpec, dict]:
    """Image sets -> (spec, host arrays): per key {"indices": uint8 (N, H, W) zero-padded to a common shape,
    "max_origin": int32 (N, 2), "log_weights": float32 (N,)}, N = all images of that key."""
    if not 1 <= per_volume <= crop:
        raise PorejaxError(f"slices per generated volume must be in 1..{crop} (the slice side), got {per_volume}")
    arrays, shapes = {}, []
    for key in sets:
        images = [to_indices(im, phase_map) for stack in sets[key] for im in stack]
        small = [im.shape for im in images if min(im.shape) < crop]
        if small:
            raise PorejaxError(
                f"{key} images of shape {small[0]} are smaller than the {crop}^2 slices the "
                "discriminator judges: use larger images or a preset with smaller slices"
            )
        sizes = tuple(tuple(int(n) for n in im.shape) for im in images)
        common = tuple(max(s[a] for s in sizes) for a in range(2))
        stack = np.zeros((len(images),) + common, np.uint8)
        for i, im in enumerate(images):
            stack[i, : im.shape[0], : im.shape[1]] = im
        max_origin = np.asarray([[n - crop for n in s] for s in sizes], np.int32)
        arrays[key] = {
            "indices": stack,
            "max_origin": max_origin,
            "log_weights": np.log(np.prod(max_origin + 1, axis=1).astype(np.float32)),
        }
        shapes.append(tuple(sorted(set(sizes))))
    spec = SliceSpec(crop, batch_size, per_volume, phase_map.n_phases, tuple(arrays), tuple(shapes))
    return spec, arrays


def sample_real(arrays: dict, spec: SliceSpec, key: jax.Array, count: int | None = None) -> jax.Array:
    """One-hot real crops float32 (count, S, S, n_phases) (default count: `spec.count`) of one key's images."""
    count = spec.count if count is None else count
    arrays = jax.tree_util.tree_map(jnp.asarray, arrays)
    k_image, k_pos = jax.random.split(key)
    image = jax.random.categorical(k_image, arrays["log_weights"], shape=(count,)).astype(jnp.int32)
    pos = jax.random.randint(k_pos, (count, 2), 0, arrays["max_origin"][image] + 1, jnp.int32)
    origins = jnp.concatenate([image[:, None], pos], axis=1)
    crops = jax.vmap(lambda o: jax.lax.dynamic_slice(arrays["indices"], tuple(o), (1, spec.crop, spec.crop))[0])(
        origins
    )
    return jax.nn.one_hot(crops, spec.n_phases, dtype=jnp.float32)


def generated_slices(volumes: jax.Array, axis: int, per_volume: int, key: jax.Array | None = None) -> jax.Array:
    """Slices normal to `axis` of volumes (B, S, S, S, C), in-plane axes as the module docstring says:
    all S of each volume (per_volume == S, `key` unused) or `per_volume` distinct random ones each,
    -> (B * per_volume, S, S, C), the slices of volume 0 first."""
    b, s = volumes.shape[0], volumes.shape[1 + axis]
    planes = jnp.moveaxis(volumes, 1 + axis, 1)  # (B, S, a, b, C): the remaining axes keep their order
    if per_volume != s:
        picks = jax.vmap(lambda k: jax.random.permutation(k, s)[:per_volume])(jax.random.split(key, b))
        planes = jnp.take_along_axis(planes, picks[:, :, None, None, None], axis=1)
    return planes.reshape((b * per_volume,) + planes.shape[2:])


def real_reference(arrays: dict, spec: SliceSpec, count: int, seed: int) -> np.ndarray:
    """`count` phase-index crops (count, 1, S, S) spread over the keys' images: one-voxel-thick volumes for the
    trainer's quick evaluation (volume fractions) and sample images."""
    per_key = -(-count // len(spec.keys))
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(spec.keys))
    sample = jax.jit(lambda a, k: jnp.argmax(sample_real(a, spec, k, per_key), -1))
    crops = np.concatenate([np.asarray(sample(arrays[name], k)) for name, k in zip(spec.keys, keys)])
    return crops[:count, None]


def load_images(
    paths: Mapping[str, Sequence[str | os.PathLike]],
    names: Sequence[str] | None = None,
    voxel_size: float | None = None,
) -> tuple[dict[str, list[np.ndarray]], PhaseMap]:
    """Read the 2D images per discriminator key ({"xyz": paths} or {"x", "y", "z"}) and the PhaseMap of all
    their label values (the same in every image)."""
    images = {key: [read_images(p) for p in found] for key, found in paths.items()}
    return images, phase_map_of(images, names, voxel_size)
