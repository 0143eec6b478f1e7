"""The two sets: random distinct crops of the real volumes (with provenance: what the generator saw of each
volume) and generated volumes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from porejax.axes import AXES
from porejax.compare.progress import Progress, eta, say
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator
from porejax.volume import PhaseMap, read_volume, validate_volume

Region = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


class RealCrops(NamedTuple):
    """The real set: crops and where they lie."""

    crops: np.ndarray  # (K, S, S, S) label volumes
    volumes: np.ndarray  # (K,) index of each crop's source volume
    positions: np.ndarray  # (K, 3) each crop's first voxel in its source volume


def crop_positions(region: Region, size: int) -> int:
    """The number of distinct positions of a crop of side `size` inside `region` ([start, stop) per axis)."""
    return int(np.prod([max(0, stop - start - size + 1) for start, stop in region]))


def _distinct_positions(rng: np.random.Generator, region: Region, size: int, count: int) -> np.ndarray:
    """`count` distinct uniformly random crop positions (count, 3) inside `region`: independent draws
    per axis, redrawn without replacement if they repeat a position (count <= crop_positions)."""
    positions = np.stack([rng.integers(start, stop - size + 1, count) for start, stop in region], axis=1)
    if len(np.unique(positions, axis=0)) < count:
        span = [stop - start - size + 1 for start, stop in region]
        flat = rng.choice(int(np.prod(span)), count, replace=False)
        positions = np.stack(np.unravel_index(flat, span), axis=1) + np.array([start for start, _ in region])
    return positions


def random_crops(
    volumes: Sequence[np.ndarray],
    n: int,
    size: int,
    seed: int = 0,
    regions: Sequence[Region | None] | None = None,
    names: Sequence[str] | None = None,
) -> RealCrops:
    """Up to `n` crops of side `size` at random, distinct positions inside the `regions` ([start, stop) per
    axis; None: the whole volume) of V volumes; crops may overlap.

    Crop i comes from volume i mod V, skipping volumes whose distinct positions are used up, so the set
    holds min(n, distinct positions summed over the volumes) crops. Positions: one generator seeded with
    `seed` draws each volume's in turn (`_distinct_positions`). names: for messages (default "volume i").
    """
    volumes = [np.asarray(v) for v in volumes]
    names = list(names) if names is not None else [f"volume {i}" for i in range(len(volumes))]
    regions = [
        tuple((0, s) for s in v.shape) if r is None else r
        for v, r in zip(volumes, regions if regions is not None else [None] * len(volumes))
    ]
    for volume, region, name in zip(volumes, regions, names):
        if min(stop - start for start, stop in region) < size:
            whole = [tuple(r) for r in region] == [(0, s) for s in volume.shape]
            where = "" if whole else f" (sampled region {region_text(region)})"
            raise PorejaxError(
                f"{name} of shape {volume.shape}{where} is smaller than the crop size {size} along "
                "some axis: use a smaller --size or a larger volume"
            )
    capacity = [crop_positions(r, size) for r in regions]
    order, load, v = [], [0] * len(volumes), 0
    while len(order) < min(n, sum(capacity)):
        if load[v] < capacity[v]:
            order.append(v)
            load[v] += 1
        v = (v + 1) % len(volumes)
    order = np.asarray(order, np.int64)
    rng = np.random.default_rng(seed)
    positions = np.zeros((len(order), 3), np.int64)
    for v, region in enumerate(regions):
        positions[order == v] = _distinct_positions(rng, region, size, load[v])
    crops = np.stack([volumes[v][x : x + size, y : y + size, z : z + size] for v, (x, y, z) in zip(order, positions)])
    return RealCrops(crops, order, positions)


def load_real_volumes(
    real: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray], phase_map: PhaseMap
) -> tuple[list[str], list[np.ndarray]]:
    """(names, label volumes) of a real volume file (TIFF / .npy) or array, or a sequence of them. Every
    volume's labels must be the PhaseMap's, and every phase must occur in the set."""
    items = [real] if isinstance(real, (str, os.PathLike, np.ndarray)) else list(real)
    if not items:
        raise PorejaxError("no real volume given: pass one or more real label volumes (--real a.tif b.tif ...)")
    names, volumes, present = [], [], set()
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray):
            name = "array" if len(items) == 1 else f"array {i}"
            volume = validate_volume(item, what=f"real volume {name}")
        else:
            name, volume = str(item), read_volume(item)
        labels = {int(v) for v in np.unique(volume)}
        if not labels <= set(phase_map.labels):
            raise PorejaxError(_labels_mismatch(f"real volume {name} has", labels, phase_map))
        names.append(name)
        volumes.append(volume)
        present |= labels
    if tuple(sorted(present)) != phase_map.labels:
        raise PorejaxError(
            _labels_mismatch(
                f"real volume {names[0]} has" if len(names) == 1 else "the real volumes together have",
                present,
                phase_map,
            )
        )
    return names, volumes


def _labels_mismatch(subject: str, labels: set[int], phase_map: PhaseMap) -> str:
    return (
        f"{subject} labels {sorted(labels)} but the checkpoint's phases are {list(phase_map.labels)}: "
        "use real volumes segmented like the training data"
    )


def real_set_text(names: Sequence[str], real_set: RealCrops, n: int, regions: Sequence[Region], size: int) -> str:
    """'K crops from V volumes (k_1 from name_1, ...)', and why K < n when it is."""
    counts = np.bincount(real_set.volumes, minlength=len(names))
    used = int(np.count_nonzero(counts))
    volumes = f"{used} volume{'s' if used > 1 else ''}" + (f" of {len(names)}" if used < len(names) else "")
    text = (
        f"{len(real_set.crops)} crops from {volumes} "
        f"({', '.join(f'{c} from {name}' for c, name in zip(counts, names))})"
    )
    if len(real_set.crops) < n:
        text += (
            f"; {n} were asked for, but the sampled regions hold only "
            f"{sum(crop_positions(r, size) for r in regions)} distinct crop positions of side {size}"
        )
    return text


def generate_set(
    generator: FrozenGenerator,
    n: int,
    size: int,
    periodic: bool = False,
    seed: int = 0,
    keep_confidence: int = 3,
    progress: Progress = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` generated label volumes (n, S, S, S), latent seed + i for volume i (as `porejax generate
    --count`), and the confidence maps of the first `keep_confidence` of them: what `porejax generate
    --size` writes (non-periodic volumes of periodic-trained generators: the interior only)."""
    axes = AXES if periodic else ""
    latent_shape = generator.latent_size_for(size, axes)
    labels, confidence = [], []
    start = time.perf_counter()
    for i in range(n):
        volume, conf = generator.generate(generator.latent(seed + i, latent_shape), axes, size=size)
        labels.append(volume)
        if i < keep_confidence:
            confidence.append(conf)
        if (i + 1) % 10 == 0 or i + 1 == n:
            say(progress, f"generate: {i + 1}/{n} volumes ({eta(i + 1, n, start)})")
    return np.stack(labels), np.stack(confidence)


def volume_sha256(volume: np.ndarray) -> str:
    """sha256 of a label volume's bytes in C order (the training data fingerprint of `porejax train`)."""
    return hashlib.sha256(np.ascontiguousarray(volume).tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RealSource:
    """Where real crops come from and what the generator saw of the real volume."""

    sample_region: Region  # real crops are drawn here
    holdout: Region | None  # never trained on (excluded from the memorisation search)
    is_training_data: bool | None  # None: the checkpoint records no training data
    description: str


def real_source(meta: dict, volume: np.ndarray) -> RealSource:
    """Match the real volume to the checkpoint's training-data fingerprints (`meta["data"]`): crops come
    from its held-out region when training recorded one, else from the whole volume."""
    whole: Region = tuple((0, int(s)) for s in volume.shape)  # type: ignore[assignment]
    data = meta.get("data") or {}
    fingerprints = data.get("volumes") or []
    if not fingerprints:
        return RealSource(
            whole,
            None,
            None,
            "the checkpoint records no training data (e.g. made by `porejax init`): crops come from the whole volume",
        )
    digest = volume_sha256(volume)
    index = next((i for i, f in enumerate(fingerprints) if f.get("sha256") == digest), None)
    if index is None:
        return RealSource(whole, None, False, "not the checkpoint's training data: crops come from the whole volume")
    holdout = data.get("holdout") or {}
    regions, slices = holdout.get("regions") or [], int(holdout.get("slices") or 0)
    if slices <= 0 or index >= len(regions):
        return RealSource(
            whole,
            None,
            True,
            "the checkpoint was trained on this whole volume (no holdout): crops come from the training data itself",
        )
    axis = AXES.index(holdout.get("axis", "x"))
    box = [list(r) for r in whole]
    box[axis] = [int(regions[index][0]), int(regions[index][1])]
    region: Region = tuple(tuple(r) for r in box)  # type: ignore[assignment]
    return RealSource(
        region,
        region,
        True,
        f"training data: crops come from its held-out region "
        f"{region_text(region)} ({slices} slices along {AXES[axis]} never trained on)",
    )


def memorisation_targets(names: Sequence[str], sources: Sequence[RealSource]) -> tuple[list[int], str]:
    """The real volumes the memorisation check searches, and what that search means (a phrase for the
    report): the checkpoint's training data among them (outside held-out regions), else all of them."""
    training = [i for i, s in enumerate(sources) if s.is_training_data]
    if training:
        quoted = ", ".join(f"`{names[i]}`" for i in training)
        text = (
            f"the real volume{'s' if len(training) > 1 else ''} that {'are' if len(training) > 1 else 'is'} the "
            f"checkpoint's training data ({quoted}"
            f"{', outside the held-out regions' if any(sources[i].holdout for i in training) else ''})"
        )
        others = len(sources) - len(training)
        if others:
            text += (
                f"; the other {others} real volume{'s are' if others > 1 else ' is'} not training data and not searched"
            )
        return training, text
    several = len(sources) > 1
    why = (
        "the checkpoint records no training data"
        if sources[0].is_training_data is None
        else f"{'none of them is' if several else 'not'} the checkpoint's training data"
    )
    quoted = ", ".join(f"`{name}`" for name in names)
    return list(range(len(sources))), (
        f"the real volume{'s' if several else ''} {quoted} ({why}: this measures "
        f"similarity to {'them' if several else 'it'}, not memorisation of the "
        "training data)"
    )


def region_text(region: Region) -> str:
    return " × ".join(f"{AXES[a]} ∈ [{start}, {stop})" for a, (start, stop) in enumerate(region))


def non_overlapping_crops(region: Region, size: int) -> int:
    return int(np.prod([(stop - start) // size for start, stop in region]))
