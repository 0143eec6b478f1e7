"""Memorisation check: the nearest training sub-volume of every generated volume by voxel agreement,
searched exhaustively by FFT cross-correlation, against the same for real crops the generator never saw."""

from __future__ import annotations

import dataclasses

import functools
import itertools
import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from porejax.compare.progress import Progress, eta, say
from porejax.compare.sampling import Region
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap, to_indices

EXACT_COPY_AGREEMENT = 0.99
MIN_BASELINE_CROPS = 20  # fewer real baseline crops than this: their 95th percentile means little, no verdict
MEMORISATION_RULE = (
    f"A generated volume is an exact copy when its nearest training sub-volume agrees on >= {EXACT_COPY_AGREEMENT:.0%} "
    "of the voxels. Memorisation is **suspected** when any generated volume is an exact copy, or when the median "
    "nearest agreement of the generated volumes exceeds the 95th percentile of the baseline (real crops the "
    "generator never saw, against the same training positions). With fewer than "
    f"{MIN_BASELINE_CROPS} baseline crops that percentile means little: there is then no verdict ('too few real "
    "crops to judge') unless a generated volume is an exact copy."
)


def _simplex_basis(n_phases: int) -> np.ndarray:
    """(P, P-1) orthonormal basis of the vectors summing to 0 (Helmert): rows e_a satisfy
    e_a . e_b = [a == b] - 1/P, so sum_x e(u(x)) . e(v(x)) = (equal voxels) - N / P."""
    basis = np.zeros((n_phases, n_phases - 1))
    for k in range(1, n_phases):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -k
        basis[:, k - 1] /= math.sqrt(k * (k + 1))
    return basis.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("shape",))
def _best_offset(
    block_spectrum: jax.Array, query: jax.Array, origin: jax.Array, excluded: jax.Array, shape: tuple[int, int, int]
) -> tuple[jax.Array, jax.Array]:
    """Largest correlation of `query` (S, S, S, C) with the block over its valid offsets, and where.

    block_spectrum: rfftn of the embedded block of `shape` (F0, F1, F2): (F0, F1, F2 // 2 + 1, C).
    origin (3,): the block's first voxel in the volume. excluded (K, 2, 3): [lo, hi) boxes of volume offsets not to
    consider.
    Returns (max correlation, flat index into the block's (F - S + 1)^3 offsets) (-inf when none).
    """
    size = query.shape[0]
    spectrum = jnp.fft.rfftn(query, s=shape, axes=(0, 1, 2))
    corr = jnp.fft.irfftn(jnp.sum(jnp.conj(spectrum) * block_spectrum, axis=-1), s=shape, axes=(0, 1, 2))
    valid = tuple(n - size + 1 for n in shape)
    corr = corr[: valid[0], : valid[1], : valid[2]]
    offsets = [origin[a] + jnp.arange(valid[a]) for a in range(3)]
    inside = [
        (offsets[a][None, :] >= excluded[:, 0, a, None]) & (offsets[a][None, :] < excluded[:, 1, a, None])
        for a in range(3)
    ]  # (K, valid[a]) each
    hit = jnp.any(inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :], axis=0)
    corr = jnp.where(hit, -jnp.inf, corr).ravel()
    best = jnp.argmax(corr)
    return corr[best], best


def _blocks(
    shape: Sequence[int], size: int, block_side: int
) -> tuple[list[tuple[int, ...]], tuple[int, ...], list[int]]:
    """Tile the crop offsets of a volume with equal blocks: (block origins, block shape, new offsets per
    block). Along an axis of n voxels a block is min(n, block_side) voxels and covers its (block - size + 1)
    offsets; the last block is shifted back to fit, so it repeats some offsets (counted once)."""
    per_axis, block_shape = [], []
    for n in shape:
        f = n if n <= block_side else block_side
        step, count = f - size + 1, n - size + 1
        starts = list(range(0, count, step))
        per_axis.append([(min(s, n - f), min(step, count - s)) for s in starts])
        block_shape.append(f)
    origins, new = [], []
    for combo in itertools.product(*per_axis):
        origins.append(tuple(c[0] for c in combo))
        new.append(int(np.prod([c[1] for c in combo])))
    return origins, tuple(block_shape), new


def nearest_crop_agreement(
    queries: np.ndarray,
    volume: np.ndarray,
    phase_map: PhaseMap,
    excluded: np.ndarray | None = None,
    block_side: int = 256,
    max_blocks: int = 8,
    seed: int = 0,
    progress: Progress = None,
    what: str = "volumes",
) -> tuple[np.ndarray, np.ndarray, float]:
    """For each query (Q, S, S, S), the crop of `volume` (X, Y, Z) with the most equal voxels.

    Exhaustive over crop offsets by FFT cross-correlation of simplex-embedded phases (P - 1 channels,
    `_simplex_basis`), in blocks of side `block_side`; when a volume needs more than `max_blocks` blocks,
    a random subset (seeded) is searched. excluded: (Q, K, 2, 3) [lo, hi) boxes of offsets not to
    consider per query (e.g. crops overlapping the query itself, or a held-out region).
    Returns (agreement (Q,) in [0, 1], NaN when no offset was allowed; offset (Q, 3) int, -1 when none;
    fraction of all offsets searched).
    """
    queries, volume = np.asarray(queries), np.asarray(volume)
    size = queries.shape[1]
    if queries.ndim != 4 or queries.shape[1:] != (size,) * 3 or volume.ndim != 3 or min(volume.shape) < size:
        raise PorejaxError(
            f"memorisation check needs cubic queries (Q, S, S, S) no larger than the volume; "
            f"got queries {queries.shape} and volume {volume.shape}"
        )
    basis = _simplex_basis(phase_map.n_phases)
    embedded_queries = basis[to_indices(queries, phase_map)]
    volume_indices = to_indices(volume, phase_map)
    excluded = np.zeros((len(queries), 0, 2, 3), np.int32) if excluded is None else np.asarray(excluded, np.int32)
    origins, block_shape, new = _blocks(volume.shape, size, block_side)
    order = np.arange(len(origins))
    if len(origins) > max_blocks:
        order = np.sort(np.random.default_rng(seed).choice(len(origins), max_blocks, replace=False))
    searched = sum(new[i] for i in order) / np.prod([n - size + 1 for n in volume.shape])
    best = np.full(len(queries), -np.inf)
    where = np.full((len(queries), 3), -1, np.int64)
    valid = tuple(f - size + 1 for f in block_shape)
    start = time.perf_counter()
    for done, b in enumerate(order, 1):
        o = origins[b]
        block = volume_indices[o[0] : o[0] + block_shape[0], o[1] : o[1] + block_shape[1], o[2] : o[2] + block_shape[2]]
        spectrum = jnp.fft.rfftn(jnp.asarray(basis[block]), axes=(0, 1, 2))
        for q in range(len(queries)):
            value, flat = _best_offset(
                spectrum,
                jnp.asarray(embedded_queries[q]),
                jnp.asarray(o, jnp.int32),
                jnp.asarray(excluded[q]),
                block_shape,
            )
            value = float(value)
            if value > best[q]:
                best[q] = value
                where[q] = np.asarray(o) + np.unravel_index(int(flat), valid)
        say(progress, f"memorisation search ({what}): block {done}/{len(order)} ({eta(done, len(order), start)})")
    n_voxels = size**3
    agreement = np.where(np.isfinite(best), best / n_voxels + 1 / phase_map.n_phases, np.nan)
    return np.clip(agreement, 0.0, 1.0), where, float(searched)


def _overlap_box(position: Sequence[int], size: int) -> np.ndarray:
    """[lo, hi) offsets whose crop overlaps the crop at `position`: (2, 3)."""
    p = np.asarray(position)
    return np.stack([p - size + 1, p + size])


def region_box(region: Sequence[tuple[int, int]], size: int) -> np.ndarray:
    """[lo, hi) offsets whose crop overlaps the region [start, stop) per axis: (2, 3)."""
    r = np.asarray(region)
    return np.stack([r[:, 0] - size + 1, r[:, 1]])


def memorisation_check(
    generated: np.ndarray,
    reference: np.ndarray,
    training_volumes: Sequence[np.ndarray],
    phase_map: PhaseMap,
    reference_positions: np.ndarray | None = None,
    reference_volumes: Sequence[int] | None = None,
    holdouts: Sequence[Region | None] | None = None,
    max_blocks: int = 8,
    seed: int = 0,
    progress: Progress = None,
) -> dict:
    """Nearest training crop (voxel agreement) of each generated volume vs. the same for real crops.

    generated (G, S, S, S), reference (R, S, S, S): label volumes; training_volumes: the T volumes (X, Y, Z)
    the generator was trained on (the nearest crop is the best over all of them). holdouts: per training
    volume, the region [(start, stop)] * 3 never trained on, or None (its crops are excluded from the
    search). reference_positions (R, 3) and reference_volumes (R,): where the reference crops lie, as an
    index into training_volumes (-1: in none of them; default 0 for all); crops overlapping a reference crop
    in its own volume are excluded, so the baseline is the nearest *other* training crop. max_blocks: the
    search budget (`nearest_crop_agreement`), shared among the training volumes (at least one block each).
    Returns a JSON-able dict (agreements, the volume index and offset of each nearest crop, exact-copy
    rates, verdict).
    """
    size = np.shape(generated)[1]
    if np.shape(reference)[1:] != np.shape(generated)[1:]:
        raise PorejaxError(f"generated {np.shape(generated)} and reference {np.shape(reference)} crops differ in size")
    if not training_volumes:
        raise PorejaxError("the memorisation check needs at least one training volume to search")
    search = _Search(
        list(training_volumes),
        [None] * len(training_volumes) if holdouts is None else list(holdouts),
        phase_map,
        size,
        max(1, max_blocks // len(training_volumes)),
        seed,
        progress,
    )
    if reference_volumes is None:
        reference_volumes = np.zeros(len(reference), np.int64)
    gen_agree, gen_where, gen_which, searched = search.nearest(generated, None, [-1] * len(generated), "generated")
    ref_agree, ref_where, ref_which, _ = search.nearest(
        reference, reference_positions, reference_volumes, "real baseline"
    )
    if np.isnan(gen_agree).any():
        raise PorejaxError(
            f"the training volumes {[np.shape(v) for v in training_volumes]} hold no crop of side "
            f"{size} outside the held-out regions: use a smaller --size"
        )
    usable = ref_agree[~np.isnan(ref_agree)]  # a real crop may have no non-overlapping training crop
    baseline = {**_nearest_summary(ref_agree, ref_which, ref_where), "crops_with_a_training_crop": usable.size}
    return {
        "rule": MEMORISATION_RULE,
        "searched_fraction_of_training_positions": searched,
        "generated": _nearest_summary(gen_agree, gen_which, gen_where),
        "baseline": baseline,
        "verdict": _verdict(gen_agree, usable, baseline["q95"]),
    }


def _nearest_summary(agreement: np.ndarray, volume: np.ndarray, offset: np.ndarray) -> dict:
    """Per crop: nearest agreement, the volume and offset of that training crop; over the crops that have
    one (agreement not NaN): median, 95th percentile, maximum and exact-copy rate (None without any)."""
    usable = agreement[~np.isnan(agreement)]

    def over_usable(statistic) -> float | None:
        return float(statistic(usable)) if usable.size else None

    return {
        "nearest_agreement": agreement,
        "nearest_volume": volume,
        "nearest_offset": offset,
        "median": over_usable(np.median),
        "q95": over_usable(lambda u: np.quantile(u, 0.95)),
        "max": over_usable(np.max),
        "exact_copy_rate": over_usable(lambda u: (u >= EXACT_COPY_AGREEMENT).mean()),
    }


def _verdict(gen_agree: np.ndarray, usable: np.ndarray, baseline_q95: float | None) -> str:
    """MEMORISATION_RULE applied to the generated agreements and the usable real baseline ones."""
    if (gen_agree >= EXACT_COPY_AGREEMENT).any() or (
        usable.size >= MIN_BASELINE_CROPS and np.median(gen_agree) > baseline_q95
    ):
        return "memorisation suspected"
    if usable.size < MIN_BASELINE_CROPS:
        return "too few real crops to judge"
    return "no sign of memorisation"


@dataclasses.dataclass(frozen=True)
class _Search:
    """The nearest-crop search over the training volumes (see `memorisation_check` for the arguments)."""

    training_volumes: list
    holdouts: list
    phase_map: PhaseMap
    size: int
    budget: int  # blocks per training volume (`nearest_crop_agreement`'s max_blocks)
    seed: int
    progress: Progress

    def boxes(self, volume: int, count: int, positions: np.ndarray | None, volumes: Sequence[int]) -> np.ndarray:
        """(count, boxes, 2, 3) excluded offset boxes per query in training volume `volume`: its held-out
        region, and the crops overlapping the query itself when the query lies in that volume."""
        size, holdout = self.size, self.holdouts[volume]
        common = [] if holdout is None else [region_box(holdout, size)]
        per_query = [
            common + ([_overlap_box(positions[i], size)] if positions is not None and volumes[i] == volume else [])
            for i in range(count)
        ]
        width = max(len(b) for b in per_query) if per_query else 0
        out = np.zeros((count, width, 2, 3), np.int32)  # unused boxes stay empty ([0, 0))
        for i, b in enumerate(per_query):
            if b:
                out[i, : len(b)] = np.stack(b)
        return out

    def nearest(
        self, queries: np.ndarray, positions: np.ndarray | None, volumes: Sequence[int], what: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(best agreement (NaN: no allowed crop), its offset, its training volume) per query, and the
        fraction of all crop positions searched."""
        best = np.full(len(queries), -np.inf)
        where = np.full((len(queries), 3), -1, np.int64)
        which = np.full(len(queries), -1, np.int64)
        searched = total = 0.0
        several = len(self.training_volumes) > 1
        for t, volume in enumerate(self.training_volumes):
            agree, offset, fraction = nearest_crop_agreement(
                queries,
                volume,
                self.phase_map,
                self.boxes(t, len(queries), positions, volumes),
                max_blocks=self.budget,
                seed=self.seed,
                progress=self.progress,
                what=f"{what}, volume {t + 1}" if several else what,
            )
            better = agree > best  # NaN (no allowed offset in this volume) never wins
            best[better], where[better], which[better] = agree[better], offset[better], t
            offsets = float(np.prod([n - self.size + 1 for n in np.shape(volume)]))
            searched, total = searched + fraction * offsets, total + offsets
        return np.where(np.isfinite(best), best, np.nan), where, which, searched / total
