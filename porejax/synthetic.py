"""Procedural three-phase microstructures: the built-in default data set and test fixtures.

Both generators are pure NumPy functions of their arguments (same seed -> same bytes), periodic in
all three axes (tiles wrap seamlessly), and meet the requested volume fractions exactly up to one voxel.
Array axes 0, 1, 2 are x, y, z; sizes are in voxels.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from porejax.errors import PorejaxError
from porejax.volume import PhaseMap

Size = int | Sequence[int]

CATHODE_FRACTIONS = (0.45, 0.40, 0.15)  # pore, active (NMC), binder
CATHODE_LABELS = (0, 85, 170)
ANODE_FRACTIONS = (0.21, 0.34, 0.45)  # pore, Ni, YSZ
ANODE_LABELS = (0, 128, 255)
_DATASETS = {
    "cathode": (("pore", "nmc", "binder"), 0.390625),
    "anode": (("pore", "ni", "ysz"), 0.065),
}


def cathode(
    size: Size,
    seed: int = 0,
    fractions: Sequence[float] = CATHODE_FRACTIONS,
    labels: Sequence[int] = CATHODE_LABELS,
    mean_radius: float | None = None,
) -> np.ndarray:
    """Cathode-like volume: overlapping polydisperse spheres (active), binder at contacts, pore elsewhere.

    Sphere radii are log-normal (mean `mean_radius` voxels, default max(4, min(shape) / 16)); spheres are
    placed uniformly with wrap-around until their union reaches the active fraction, and the active phase
    is the exact-count set of voxels deepest inside a sphere. Binder is the exact-count set of pore voxels
    with the smallest sum of distances to the nearest two particle surfaces: bridges in necks and narrow
    gaps between particles, leaving free particle surfaces in contact with pore. Periodic in x, y and z.

    fractions: (pore, active, binder) volume fractions; labels: their uint8 values.
    Returns a uint8 array of shape (size, size, size) or `size` when a 3-tuple is given.
    """
    shape, fractions, labels, rng = _arguments(size, seed, fractions, labels)
    n_voxels = int(np.prod(shape))
    mean_radius = _length("mean_radius", mean_radius, max(4.0, min(shape) / 16), minimum=1.0)
    n_active = round(fractions[1] * n_voxels)
    n_binder = round(fractions[2] * n_voxels)

    centres, radii = _place_spheres(shape, n_active, float(mean_radius), rng)
    margin = float(mean_radius)
    while True:
        gap_1, gap_2 = _surface_gaps(shape, centres, radii, margin)
        active = _top_k(-gap_1, n_active)
        # two-particle score: small where a pore voxel is close to two particle surfaces (necks, gaps);
        # voxels near one particle only rank next, by their distance to it
        score = -(gap_1 + np.where(np.isfinite(gap_2), gap_2, np.float32(4 * max(shape) + margin)))
        score[active] = -np.inf
        if np.count_nonzero(np.isfinite(score)) >= n_binder:
            break
        margin *= 2  # too few ranked pore voxels near particles: widen the visited shell
    binder = _top_k(score, n_binder)

    out = np.full(shape, labels[0], dtype=np.uint8)
    out[active] = labels[1]
    out[binder] = labels[2]
    return out


def anode(
    size: Size,
    seed: int = 0,
    fractions: Sequence[float] = ANODE_FRACTIONS,
    labels: Sequence[int] = ANODE_LABELS,
    correlation_length: float | None = None,
) -> np.ndarray:
    """Anode-like volume: a plurigaussian model of two independent Gaussian random fields (g1, g2).

    Each field is white noise smoothed periodically (FFT) with a Gaussian kernel of standard deviation
    `correlation_length` voxels (>= 0.5; default max(2, min(shape) / 20)). The phase of a voxel is given by the
    polar angle of (g1, g2), which is uniform: three consecutive angular sectors, cut at the exact-count
    quantiles, so every phase touches the other two (triple-phase boundaries throughout). At the default
    fractions each phase forms a network spanning x, y and z. Periodic in x, y and z.

    fractions: (pore, Ni, YSZ) volume fractions; labels: their uint8 values.
    Returns a uint8 array of shape (size, size, size) or `size` when a 3-tuple is given.
    """
    shape, fractions, labels, rng = _arguments(size, seed, fractions, labels)
    correlation_length = _length("correlation_length", correlation_length, max(2.0, min(shape) / 20), minimum=0.5)
    n_voxels = int(np.prod(shape))
    field_1 = _gaussian_smooth(rng.standard_normal(shape, dtype=np.float32), correlation_length)
    field_2 = _gaussian_smooth(rng.standard_normal(shape, dtype=np.float32), correlation_length)
    angle = np.arctan2(field_2, field_1)
    del field_1, field_2
    phase_0 = _top_k(-angle, round(fractions[0] * n_voxels))
    angle[phase_0] = np.inf
    phase_1 = _top_k(-angle, round(fractions[1] * n_voxels))

    out = np.full(shape, labels[2], dtype=np.uint8)
    out[phase_0] = labels[0]
    out[phase_1] = labels[1]
    return out


def default_dataset(kind: str = "cathode", size: Size = 128, seed: int = 0) -> tuple[np.ndarray, PhaseMap]:
    """The built-in data set: a `kind` ("cathode" or "anode") volume with default fractions and its PhaseMap.

    Cathode phases: pore, nmc, binder at 0.390625 um per voxel; anode: pore, ni, ysz at 0.065 um.
    """
    if kind not in _DATASETS:
        raise PorejaxError(f"unknown synthetic data set '{kind}': choose one of {', '.join(_DATASETS)}")
    names, voxel_size = _DATASETS[kind]
    volume = cathode(size, seed) if kind == "cathode" else anode(size, seed)
    labels = CATHODE_LABELS if kind == "cathode" else ANODE_LABELS
    return volume, PhaseMap(labels, names, voxel_size)


def _place_spheres(
    shape: tuple[int, int, int], n_target: int, mean_radius: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n, 3) and radii (n,) in voxels of spheres with log-normal radii, added uniformly until
    their periodic union covers at least `n_target` voxels."""
    covered_mask = np.zeros(shape, dtype=bool)
    centres, radii = [], []
    covered = 0
    sigma = 0.3
    while covered < n_target:
        radius = float(
            np.clip(rng.lognormal(np.log(mean_radius) - sigma**2 / 2, sigma), 0.5 * mean_radius, 2.5 * mean_radius)
        )
        centre = rng.uniform(0, shape)
        box, gap = _sphere_box(shape, centre, radius, 0.0)
        inside = gap <= 0
        covered += int(np.count_nonzero(inside & ~covered_mask[box]))
        covered_mask[box] |= inside
        centres.append(centre)
        radii.append(radius)
    return np.array(centres), np.array(radii)


def _surface_gaps(
    shape: tuple[int, int, int], centres: np.ndarray, radii: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and second-smallest (distance - radius) over the spheres, in voxels (negative inside).

    Only voxels within `margin` of a sphere surface are visited; the rest stay +inf. float32 of `shape`.
    """
    gap_1 = np.full(shape, np.inf, dtype=np.float32)
    gap_2 = np.full(shape, np.inf, dtype=np.float32)
    for centre, radius in zip(centres, radii):
        box, gap = _sphere_box(shape, centre, radius, margin)
        old_1, old_2 = gap_1[box], gap_2[box]
        gap_2[box] = np.minimum(old_2, np.maximum(old_1, gap))
        gap_1[box] = np.minimum(old_1, gap)
    return gap_1, gap_2


def _sphere_box(
    shape: tuple[int, int, int], centre: np.ndarray, radius: float, margin: float
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Periodic index box around a sphere (reach radius + margin, at most one period per axis) and the
    float32 (distance - radius) of its voxels, using each voxel's nearest periodic image."""
    reach = int(np.ceil(radius + margin))
    index, offset = [], []
    for c, n in zip(centre, shape):
        width = min(2 * reach + 1, n)
        start = int(np.floor(c)) - (width - 1) // 2
        steps = np.arange(start, start + width)
        index.append(steps % n)
        offset.append((steps - c).astype(np.float32))
    dx, dy, dz = np.ix_(*offset)
    return np.ix_(*index), np.sqrt(dx * dx + dy * dy + dz * dz) - np.float32(radius)


def _gaussian_smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian filter (standard deviation `sigma` voxels) of a 3D float32 field, via real FFT."""
    spectrum = np.fft.rfftn(field)
    for axis, n in enumerate(field.shape):
        freq = np.fft.rfftfreq(n) if axis == field.ndim - 1 else np.fft.fftfreq(n)
        kernel = np.exp(-2 * (np.pi * sigma * freq) ** 2).astype(spectrum.dtype)
        spectrum *= kernel.reshape([-1 if a == axis else 1 for a in range(field.ndim)])
    return np.fft.irfftn(spectrum, s=field.shape, axes=range(field.ndim)).astype(np.float32)


def _top_k(score: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of exactly the `k` largest entries of `score` (ties broken deterministically)."""
    flat = score.reshape(-1)
    mask = np.zeros(flat.size, dtype=bool)
    if k > 0:
        mask[np.argpartition(flat, flat.size - k)[flat.size - k :]] = True
    return mask.reshape(score.shape)


def _arguments(
    size: Size, seed: int, fractions: Sequence[float], labels: Sequence[int]
) -> tuple[tuple[int, int, int], tuple[float, float, float], tuple[int, int, int], np.random.Generator]:
    """The checked common arguments of a structure: (shape, fractions, labels, random generator)."""
    return _shape(size), _fractions(fractions), _labels(labels), _rng(seed)


def _length(name: str, value: float | None, default: float, minimum: float) -> float:
    """A length in voxels: `default` for None, otherwise a finite number >= `minimum`."""
    if value is None:
        return default
    if not (isinstance(value, numbers.Real) and np.isfinite(value) and value >= minimum):
        raise PorejaxError(f"{name} must be a number of voxels >= {minimum:g}, got {value!r}")
    return float(value)


def _shape(size: Size) -> tuple[int, int, int]:
    if isinstance(size, numbers.Integral):
        sides = (size,) * 3
    else:
        sides = tuple(size) if isinstance(size, Sequence) else ()
    if len(sides) != 3 or not all(isinstance(s, numbers.Integral) for s in sides):
        raise PorejaxError(f"size must be an integer or three integers (x, y, z), got {size!r}")
    if min(sides) < 8:
        raise PorejaxError(f"size {sides} is too small: every side must be at least 8 voxels")
    return tuple(int(s) for s in sides)


def _fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise PorejaxError(f"fractions must be 3 numbers (pore and two solid phases), got {fractions!r}") from None
    if len(values) != 3:
        raise PorejaxError(f"fractions must have 3 entries (one per phase), got {len(values)}: {values}")
    if not all(0 < f < 1 for f in values):
        raise PorejaxError(f"every volume fraction must lie strictly between 0 and 1, got {values}")
    if abs(sum(values) - 1) > 1e-6:
        raise PorejaxError(f"fractions must sum to 1, got {values} (sum {sum(values):.6g})")
    return values


def _labels(labels: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(labels)
    if len(values) != 3 or not all(isinstance(v, numbers.Integral) and 0 <= v <= 255 for v in values):
        raise PorejaxError(f"labels must be 3 integers in 0..255 (uint8), got {values}")
    if len(set(values)) != 3:
        raise PorejaxError(f"labels must be distinct, got {values}")
    return tuple(int(v) for v in values)


def _rng(seed: int) -> np.random.Generator:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise PorejaxError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))
