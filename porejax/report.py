"""Compare real and generated microstructures: statistics, memorisation check and the written report.

The comparison core works on arrays (label volumes with the PhaseMap's original labels):

- `characterise_set(volumes, phase_map, voxel_size)` -> `SetMetrics`: per volume, the volume fraction,
  specific surface area and relative diffusivity (x, y, z) of every phase, the TPB density (three-phase
  volumes) and S2(r) along x, y, z, all from `porejax.metrics`;
- `compare_metrics(real, generated, phase_map)` -> one row per metric and phase: mean ± std of both
  sets, the difference of means in units of the real std, the std ratio (generated / real; well below 1
  means lost diversity, i.e. mode collapse), a two-sample Kolmogorov-Smirnov test and a verdict
  (`VERDICT_RULE`);
- `memorisation_check(generated, reference, training_volumes, phase_map)`: the nearest training
  sub-volume of every generated volume by voxel agreement (fraction of equal voxels), searched
  exhaustively over every crop position of the training volume(s) by FFT cross-correlation, against the
  same for real crops the generator never saw (the baseline);
- `random_crops(volumes, n, size, ...)`: the real set, distinct random crops spread over one or more
  real volumes (crop i from volume i mod V);
- `compare(real, checkpoint, ...)` samples both sets from one or more real volumes and a checkpoint and
  writes report.md, report.html (figures embedded), metrics.json and the figures (`porejax.report_figures`).

JSON conventions (metrics.json): plain numbers; +-infinity as the strings "inf" / "-inf"; undefined
values (e.g. a std ratio when both stds are 0) as null. Never NaN.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax import checkpoint as ckpt
from porejax import metrics
from porejax import report_figures as figs
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator, interpolate_latents, load_generator
from porejax.volume import PhaseMap, atomic_path, read_volume, to_indices, validate_volume

FORMAT = "porejax-compare"
FORMAT_VERSION = 2  # 2: settings describe several real volumes (settings.real is a list)
AXES = "xyz"
ALPHA = 0.05
EXACT_COPY_AGREEMENT = 0.99
VERDICT_RULE = (
    "A metric **matches** when the Kolmogorov-Smirnov test does not reject equal distributions "
    f"(Bonferroni-adjusted p = min(1, p x number of metrics) >= {ALPHA}) AND the means differ by less than one "
    "real standard deviation (|Δmean| < 1 real std); otherwise it **differs**. The std ratio (generated / real) "
    "is reported separately: below 0.5 the generated set is much less diverse than the real one (mode "
    "collapse), above 2 much more. Caveat: real crops of one volume overlap and are correlated, which makes "
    "the test somewhat liberal (more 'differs' than for independent samples).")
MEMORISATION_RULE = (
    f"A generated volume is an exact copy when its nearest training sub-volume agrees on >= {EXACT_COPY_AGREEMENT:.0%} "
    "of the voxels. Memorisation is **suspected** when any generated volume is an exact copy, or when the median "
    "nearest agreement of the generated volumes exceeds the 95th percentile of the baseline (real crops the "
    "generator never saw, against the same training positions).")
Progress = Callable[[str], None] | None
_CHARACTERISE_BATCH = 8


# --- two-sample Kolmogorov-Smirnov test ------------------------------------------------------------------
class KSResult(NamedTuple):
    statistic: float  # D = sup |F_1 - F_2| of the two empirical CDFs
    pvalue: float     # two-sided


EXACT_KS_MAX_N = 10000


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution, Q(x) = 2 sum_k (-1)^(k-1) exp(-2 k^2 x^2).

    For x < 1 the equivalent Jacobi form 1 - sqrt(2 pi) / x sum_k exp(-(2k-1)^2 pi^2 / (8 x^2)) is
    summed instead (the alternating series converges slowly there). Accurate to ~1e-15.
    """
    if x <= 0:
        return 1.0
    k = np.arange(1, 101)
    if x < 1.0:
        cdf = math.sqrt(2 * math.pi) / x * np.sum(np.exp(-((2 * k - 1) * math.pi) ** 2 / (8 * x * x)))
        return float(np.clip(1 - cdf, 0.0, 1.0))
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * (k * x) ** 2)), 0.0, 1.0))


def _exact_ks_sf(n1: int, n2: int, statistic: float) -> float:
    """P(D >= statistic) for samples of sizes n1, n2 from one continuous distribution (exact).

    The merged sample is a uniformly random lattice path from (0, 0) to (n1, n2); D >= d exactly when the
    path leaves the band |i n2 - j n1| < d n1 n2. The probability mass of the path is propagated one
    anti-diagonal at a time and the mass that leaves the band is summed: O((n1 + n2) min(n1, n2)).
    """
    n1, n2 = sorted((n1, n2))
    h = round(statistic * n1 * n2)
    if h <= 0:
        return 1.0
    i = np.arange(n1 + 1)
    mass = np.zeros(n1 + 1)
    mass[0] = 1.0
    escaped = 0.0
    for k in range(1, n1 + n2 + 1):
        remaining = n1 + n2 - (k - 1)
        step_1 = mass * (n1 - i) / remaining
        mass = mass * (n2 - (k - 1 - i)) / remaining
        mass[1:] += step_1[:-1]
        outside = np.abs(i * n2 - (k - i) * n1) >= h
        escaped += mass[outside].sum()
        mass[outside] = 0.0
    return float(min(1.0, escaped))


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> KSResult:
    """Two-sided two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp without scipy).

    p-value: exact (the lattice-path distribution, as scipy's default) when both samples have at most
    EXACT_KS_MAX_N values, else the asymptotic Kolmogorov distribution Q(sqrt(n1 n2 / (n1 + n2)) D).
    """
    a, b = np.sort(np.asarray(a, np.float64).ravel()), np.sort(np.asarray(b, np.float64).ravel())
    if a.size == 0 or b.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise PorejaxError(f"the KS test needs two non-empty samples of finite values, got sizes {a.size}, {b.size}")
    merged = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, merged, side="right") / a.size
    cdf_b = np.searchsorted(b, merged, side="right") / b.size
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    if max(a.size, b.size) <= EXACT_KS_MAX_N:
        return KSResult(d, _exact_ks_sf(a.size, b.size, d))
    return KSResult(d, kolmogorov_sf(math.sqrt(a.size * b.size / (a.size + b.size)) * d))


# --- characterising a set of volumes ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SetMetrics:
    """Per-volume metrics of a set of B label volumes with P phases (PhaseMap order).

    volume_fraction (B, P); specific_surface_area (B, P) in 1/um; relative_diffusivity (B, P, 3) along
    x, y, z (mirror side boundaries; 0 without a spanning path); tpb_density (B,) in 1/um^2 or None when
    P != 3; s2 (B, P, 3, L): S2 along x, y, z at lags 0..L-1 voxels (s2[..., 0] = volume fraction).
    """

    volume_fraction: np.ndarray
    specific_surface_area: np.ndarray
    relative_diffusivity: np.ndarray
    tpb_density: np.ndarray | None
    s2: np.ndarray

    @property
    def size(self) -> int:
        return self.volume_fraction.shape[0]

    def values(self, metric: str, phase: int | None) -> np.ndarray:
        """The (B,) per-volume values of a table metric (see METRICS); D_rel is the mean of x, y, z."""
        if metric == "tpb_density":
            return self.tpb_density
        if metric == "relative_diffusivity":
            return self.relative_diffusivity[:, phase].mean(axis=1)
        return getattr(self, metric)[:, phase]

    def to_json(self) -> dict:
        out = {"volume_fraction": self.volume_fraction, "specific_surface_area_per_um": self.specific_surface_area,
               "relative_diffusivity_xyz": self.relative_diffusivity}
        if self.tpb_density is not None:
            out["tpb_density_per_um2"] = self.tpb_density
        return out


class Metric(NamedTuple):
    key: str
    title: str
    unit: str       # plain text, for tables and axis labels
    per_phase: bool


METRICS = (Metric("volume_fraction", "volume fraction", "", True),
           Metric("specific_surface_area", "specific surface area", "µm⁻¹", True),
           Metric("relative_diffusivity", "relative diffusivity D_rel (mean of x, y, z)", "", True),
           Metric("tpb_density", "TPB density", "µm⁻²", False))


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _eta(done: int, total: int, start: float) -> str:
    elapsed = time.perf_counter() - start
    remaining = elapsed / done * (total - done)
    return f"{elapsed:.0f} s elapsed, ~{remaining:.0f} s left"


def characterise_set(volumes: np.ndarray, phase_map: PhaseMap, voxel_size: float, progress: Progress = None,
                     what: str = "volumes") -> SetMetrics:
    """Characterise label volumes (B, S, S, S) with the PhaseMap's labels by `metrics.characterise`.

    Metrics are those of non-periodic volumes for every set (outer faces and wrap-around paths never
    count), so periodic and non-periodic sets compare like for like. Works in batches of 8 volumes (smaller
    sets and the last batch are padded, so every call has one compiled shape) and reports progress.
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4 or volumes.shape[0] < 1:
        raise PorejaxError(f"{what} must be a batch (B, D, H, W) of label volumes, got shape {volumes.shape}")
    to_indices(volumes, phase_map)  # every label must belong to the PhaseMap
    labels = phase_map.labels
    n, batch = volumes.shape[0], _CHARACTERISE_BATCH
    parts: list[dict[str, np.ndarray]] = []
    start = time.perf_counter()
    for lo in range(0, n, batch):
        chunk = volumes[lo:lo + batch]
        real_count = len(chunk)
        if real_count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real_count, axis=0)])
        part = _characterise_batch(chunk, labels, voxel_size)
        parts.append({k: v[:real_count] for k, v in part.items()})
        _say(progress, f"characterise {what}: {lo + real_count}/{n} volumes ({_eta(lo + real_count, n, start)})")
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return SetMetrics(merged["vf"], merged["ssa"], merged["drel"], merged.get("tpb"), merged["s2"])


def _characterise_batch(batch: np.ndarray, labels: tuple[int, ...], voxel_size: float) -> dict[str, np.ndarray]:
    """`metrics.characterise` of a batch -> arrays: vf, ssa (B, P), drel (B, P, 3), s2 (B, P, 3, L), tpb (B,)."""
    records = metrics.characterise(batch, voxel_size, phases=labels)
    phases = [[r["phases"][str(lab)] for lab in labels] for r in records]
    out = {"vf": np.array([[p["volume_fraction"] for p in row] for row in phases]),
           "ssa": np.array([[p["specific_surface_area"] for p in row] for row in phases]),
           "drel": np.array([[[p["relative_diffusivity"][a] for a in AXES] for p in row] for row in phases]),
           "s2": np.array([[[p["tpcf"][a] for a in AXES] for p in row] for row in phases])}
    if len(labels) == 3:
        out["tpb"] = np.array([r["tpb_density"] for r in records], np.float64)
    return out


# --- comparing two sets ----------------------------------------------------------------------------------
def _mean_std(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def compare_values(real: np.ndarray, generated: np.ndarray, n_tests: int = 1) -> dict:
    """Statistics of one metric: means, stds (ddof=1), Δmean / real std, std ratio, KS test, verdict.

    n_tests: the number of metrics tested together (Bonferroni adjustment of the p-value).
    """
    (mean_r, std_r), (mean_g, std_g) = _mean_std(real), _mean_std(generated)
    diff = mean_g - mean_r
    if std_r > 0:
        delta = diff / std_r
    else:
        delta = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    ratio = std_g / std_r if std_r > 0 else (None if std_g == 0 else math.inf)
    ks = ks_2samp(real, generated)
    p_adjusted = min(1.0, ks.pvalue * n_tests)
    verdict = "matches" if p_adjusted >= ALPHA and abs(delta) < 1 else "differs"
    note = ""
    if ratio is not None and ratio < 0.5:
        note = "much narrower spread (mode collapse?)"
    elif ratio is not None and ratio > 2:
        note = "much wider spread"
    return {"real": {"mean": mean_r, "std": std_r, "n": int(np.size(real))},
            "generated": {"mean": mean_g, "std": std_g, "n": int(np.size(generated))},
            "delta_mean_in_real_std": delta, "std_ratio": ratio, "ks_statistic": ks.statistic,
            "p_value": ks.pvalue, "p_adjusted": p_adjusted, "verdict": verdict, "note": note}


def table_entries(phase_map: PhaseMap, has_tpb: bool) -> list[tuple[Metric, int | None]]:
    """(metric, phase index or None) for every row of the comparison table, in table order."""
    entries = [(m, p) for m in METRICS if m.per_phase for p in range(phase_map.n_phases)]
    return entries + ([(METRICS[-1], None)] if has_tpb else [])


def compare_metrics(real: SetMetrics, generated: SetMetrics, phase_map: PhaseMap) -> list[dict]:
    """One row (dict, see `compare_values`, plus metric / phase / unit) per metric and phase."""
    entries = table_entries(phase_map, real.tpb_density is not None)
    rows = []
    for metric, phase in entries:
        row = compare_values(real.values(metric.key, phase), generated.values(metric.key, phase), len(entries))
        rows.append({"metric": metric.key, "title": metric.title, "unit": metric.unit,
                     "phase": None if phase is None else phase_map.name(phase),
                     "label": None if phase is None else phase_map.labels[phase], **row})
    return rows


def s2_summary(real: SetMetrics, generated: SetMetrics, voxel_size: float) -> dict:
    """Normalised S2(r)/S2(0) per set: mean and std over volumes, (P, 3, L) each; r in um."""
    out = {"r_um": np.arange(real.s2.shape[-1]) * voxel_size}
    for name, data in (("real", real), ("generated", generated)):
        s2 = data.s2 / np.where(data.s2[..., :1] > 0, data.s2[..., :1], 1)
        out[name] = {"mean": s2.mean(axis=0), "std": s2.std(axis=0, ddof=1) if data.size > 1 else 0 * s2[0]}
    return out


def s2_band_summary(s2: dict, phase_map: PhaseMap) -> list[dict]:
    """Per phase and axis: is the generated mean S2(r)/S2(0) inside the real mean ± std at every lag r?

    Reports the fraction of lags inside the band and the largest |generated - real| mean in real stds
    (lags where the real std is 0, i.e. r = 0, count as inside when the means are equal)."""
    rows = []
    for phase in range(phase_map.n_phases):
        for axis, name in enumerate(AXES):
            real, std = s2["real"]["mean"][phase, axis], s2["real"]["std"][phase, axis]
            gap = np.abs(s2["generated"]["mean"][phase, axis] - real)
            inside = gap <= std + 1e-12
            in_std = np.where(std > 0, gap / np.where(std > 0, std, 1), np.where(gap > 1e-12, np.inf, 0.0))
            rows.append({"phase": phase_map.name(phase), "axis": name, "fraction_inside": float(inside.mean()),
                         "max_gap_in_real_std": float(in_std.max()), "all_inside": bool(inside.all())})
    return rows


def seam_continuity(volumes: np.ndarray, period: int | None = None) -> dict:
    """How seamless periodic volumes (B, D, H, W) are: per axis, the fraction of differing labels across
    the wrap seam (last slice vs first) over the mean fraction between neighbouring interior slices.

    1 means the seam is indistinguishable from an interior slice pair (the paper's periodic samples:
    1.03-1.33); open boundaries give several times more. A generator's output statistics may vary with
    the position inside its period unit (transposed-convolution checkerboard); with `period` the seam is
    also compared with the interior pairs at the same position modulo `period` ("same_phase_ratio").
    """
    out = {}
    for axis, name in enumerate(AXES):
        w = np.moveaxis(np.asarray(volumes), axis + 1, 1)
        pairs = np.mean(w[:, 1:] != w[:, :-1], axis=(0, 2, 3))  # pair (i, i + 1) for i = 0 .. n - 2
        seam = float(np.mean(w[:, 0] != w[:, -1]))
        interior = float(pairs.mean())
        out[name] = {"seam_mismatch": seam, "interior_mismatch": interior,
                     "ratio": seam / interior if interior > 0 else None}
        if period:
            same = float(pairs[(w.shape[1] - 1) % period::period].mean())
            out[name].update(same_phase_interior_mismatch=same, same_phase_ratio=seam / same if same > 0 else None)
    return out


# --- memorisation: nearest training crop by voxel agreement ----------------------------------------------
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
def _best_offset(block_spectrum: jax.Array, query: jax.Array, origin: jax.Array, excluded: jax.Array,
                 shape: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
    """Largest correlation of `query` (S, S, S, C) with the block over its valid offsets, and where.

    block_spectrum: rfftn of the embedded block of `shape` (F0, F1, F2): (F0, F1, F2 // 2 + 1, C).
    origin (3,): the block's first voxel in the volume. excluded (K, 2, 3): [lo, hi) boxes of volume offsets not to consider.
    Returns (max correlation, flat index into the block's (F - S + 1)^3 offsets) (-inf when none).
    """
    size = query.shape[0]
    spectrum = jnp.fft.rfftn(query, s=shape, axes=(0, 1, 2))
    corr = jnp.fft.irfftn(jnp.sum(jnp.conj(spectrum) * block_spectrum, axis=-1), s=shape, axes=(0, 1, 2))
    valid = tuple(n - size + 1 for n in shape)
    corr = corr[: valid[0], : valid[1], : valid[2]]
    offsets = [origin[a] + jnp.arange(valid[a]) for a in range(3)]
    inside = [(offsets[a][None, :] >= excluded[:, 0, a, None]) & (offsets[a][None, :] < excluded[:, 1, a, None])
              for a in range(3)]  # (K, valid[a]) each
    hit = jnp.any(inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :], axis=0)
    corr = jnp.where(hit, -jnp.inf, corr).ravel()
    best = jnp.argmax(corr)
    return corr[best], best


def _blocks(shape: Sequence[int], size: int, block_side: int) -> tuple[list[tuple[int, ...]], tuple[int, ...],
                                                                       list[int]]:
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


def nearest_crop_agreement(queries: np.ndarray, volume: np.ndarray, phase_map: PhaseMap,
                           excluded: np.ndarray | None = None, block_side: int = 256, max_blocks: int = 8,
                           seed: int = 0, progress: Progress = None, what: str = "volumes"
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
        raise PorejaxError(f"memorisation check needs cubic queries (Q, S, S, S) no larger than the volume; "
                           f"got queries {queries.shape} and volume {volume.shape}")
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
        block = volume_indices[o[0]:o[0] + block_shape[0], o[1]:o[1] + block_shape[1], o[2]:o[2] + block_shape[2]]
        spectrum = jnp.fft.rfftn(jnp.asarray(basis[block]), axes=(0, 1, 2))
        for q in range(len(queries)):
            value, flat = _best_offset(spectrum, jnp.asarray(embedded_queries[q]), jnp.asarray(o, jnp.int32),
                                       jnp.asarray(excluded[q]), block_shape)
            value = float(value)
            if value > best[q]:
                best[q] = value
                where[q] = np.asarray(o) + np.unravel_index(int(flat), valid)
        _say(progress, f"memorisation search ({what}): block {done}/{len(order)} ({_eta(done, len(order), start)})")
    n_voxels = size ** 3
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


def memorisation_check(generated: np.ndarray, reference: np.ndarray, training_volumes: Sequence[np.ndarray],
                       phase_map: PhaseMap, reference_positions: np.ndarray | None = None,
                       reference_volumes: Sequence[int] | None = None,
                       holdouts: Sequence[Region | None] | None = None, max_blocks: int = 8, seed: int = 0,
                       progress: Progress = None) -> dict:
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
    holdouts = [None] * len(training_volumes) if holdouts is None else list(holdouts)
    if reference_volumes is None:
        reference_volumes = np.zeros(len(reference), np.int64)
    budget = max(1, max_blocks // len(training_volumes))

    def boxes(volume: int, count: int, positions: np.ndarray | None, volumes: Sequence[int]) -> np.ndarray:
        common = [] if holdouts[volume] is None else [region_box(holdouts[volume], size)]
        per_query = [common + ([_overlap_box(positions[i], size)] if positions is not None and volumes[i] == volume
                               else []) for i in range(count)]
        width = max(len(b) for b in per_query) if per_query else 0
        out = np.zeros((count, width, 2, 3), np.int32)  # unused boxes stay empty ([0, 0))
        for i, b in enumerate(per_query):
            if b:
                out[i, :len(b)] = np.stack(b)
        return out

    def nearest(queries: np.ndarray, positions: np.ndarray | None, volumes: Sequence[int], what: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        best = np.full(len(queries), -np.inf)
        where = np.full((len(queries), 3), -1, np.int64)
        which = np.full(len(queries), -1, np.int64)
        searched = total = 0.0
        for t, volume in enumerate(training_volumes):
            agree, offset, fraction = nearest_crop_agreement(
                queries, volume, phase_map, boxes(t, len(queries), positions, volumes), max_blocks=budget, seed=seed,
                progress=progress, what=what if len(training_volumes) == 1 else f"{what}, volume {t + 1}")
            better = agree > best  # NaN (no allowed offset in this volume) never wins
            best[better], where[better], which[better] = agree[better], offset[better], t
            offsets = float(np.prod([n - size + 1 for n in np.shape(volume)]))
            searched, total = searched + fraction * offsets, total + offsets
        return np.where(np.isfinite(best), best, np.nan), where, which, searched / total

    gen_agree, gen_where, gen_which, searched = nearest(generated, None, [-1] * len(generated), "generated")
    ref_agree, ref_where, ref_which, _ = nearest(reference, reference_positions, reference_volumes, "real baseline")
    if np.isnan(gen_agree).any():
        raise PorejaxError(f"the training volumes {[np.shape(v) for v in training_volumes]} hold no crop of side "
                           f"{size} outside the held-out regions: use a smaller --size")
    usable = ref_agree[~np.isnan(ref_agree)]  # a real crop may have no non-overlapping training crop
    copies = gen_agree >= EXACT_COPY_AGREEMENT
    baseline_q95 = float(np.quantile(usable, 0.95)) if usable.size else None
    suspected = bool(copies.any() or (baseline_q95 is not None and np.median(gen_agree) > baseline_q95))
    baseline = {"nearest_agreement": ref_agree, "nearest_volume": ref_which, "nearest_offset": ref_where,
                "crops_with_a_training_crop": usable.size,
                "median": float(np.median(usable)) if usable.size else None, "q95": baseline_q95,
                "max": float(usable.max()) if usable.size else None,
                "exact_copy_rate": float((usable >= EXACT_COPY_AGREEMENT).mean()) if usable.size else None}
    return {"rule": MEMORISATION_RULE, "searched_fraction_of_training_positions": searched,
            "generated": {"nearest_agreement": gen_agree, "nearest_volume": gen_which, "nearest_offset": gen_where,
                          "median": float(np.median(gen_agree)), "q95": float(np.quantile(gen_agree, 0.95)),
                          "max": float(gen_agree.max()), "exact_copy_rate": float(copies.mean())},
            "baseline": baseline,
            "verdict": "memorisation suspected" if suspected else "no sign of memorisation"}


# --- JSON and number formatting ----------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Numpy/containers -> plain JSON values; +-inf -> "inf"/"-inf", NaN -> None (module docstring)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def fmt(value: float | str | None, digits: int = 3) -> str:
    """A number for tables: `digits` significant digits; "inf"/"-inf"; "n/a" for undefined."""
    if value is None:
        return "n/a"
    value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def fmt_mean_std(mean: float, std: float) -> str:
    """mean ± std with the std to two significant digits and the mean to the same decimal place."""
    if std > 0:
        decimals = min(8, max(0, 1 - math.floor(math.log10(std))))
        return f"{mean:.{decimals}f} ± {std:.{decimals}f}"
    return f"{fmt(mean)} ± 0"


# --- sampling the real and generated sets ------------------------------------------------------------
Region = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


class RealCrops(NamedTuple):
    """The real set: crops and where they lie."""

    crops: np.ndarray      # (K, S, S, S) label volumes
    volumes: np.ndarray    # (K,) index of each crop's source volume
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


def random_crops(volumes: Sequence[np.ndarray], n: int, size: int, seed: int = 0,
                 regions: Sequence[Region | None] | None = None, names: Sequence[str] | None = None) -> RealCrops:
    """Up to `n` crops of side `size` at random, distinct positions inside the `regions` ([start, stop) per
    axis; None: the whole volume) of V volumes; crops may overlap.

    Crop i comes from volume i mod V, skipping volumes whose distinct positions are used up, so the set
    holds min(n, distinct positions summed over the volumes) crops. Positions: one generator seeded with
    `seed` draws each volume's in turn (`_distinct_positions`). names: for messages (default "volume i").
    """
    volumes = [np.asarray(v) for v in volumes]
    names = list(names) if names is not None else [f"volume {i}" for i in range(len(volumes))]
    regions = [tuple((0, s) for s in v.shape) if r is None else r
               for v, r in zip(volumes, regions if regions is not None else [None] * len(volumes))]
    for volume, region, name in zip(volumes, regions, names):
        if min(stop - start for start, stop in region) < size:
            whole = [tuple(r) for r in region] == [(0, s) for s in volume.shape]
            where = "" if whole else f" (sampled region {_region_text(region)})"
            raise PorejaxError(f"{name} of shape {volume.shape}{where} is smaller than the crop size {size} along "
                               "some axis: use a smaller --size or a larger volume")
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
    crops = np.stack([volumes[v][x:x + size, y:y + size, z:z + size] for v, (x, y, z) in zip(order, positions)])
    return RealCrops(crops, order, positions)


def load_real_volumes(real: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray],
                      phase_map: PhaseMap) -> tuple[list[str], list[np.ndarray]]:
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
        raise PorejaxError(_labels_mismatch(f"real volume {names[0]} has" if len(names) == 1 else
                                            "the real volumes together have", present, phase_map))
    return names, volumes


def _labels_mismatch(subject: str, labels: set[int], phase_map: PhaseMap) -> str:
    return (f"{subject} labels {sorted(labels)} but the checkpoint's phases are {list(phase_map.labels)}: "
            "use real volumes segmented like the training data")


def real_set_text(names: Sequence[str], real_set: RealCrops, n: int, regions: Sequence[Region], size: int) -> str:
    """'K crops from V volumes (k_1 from name_1, ...)', and why K < n when it is."""
    counts = np.bincount(real_set.volumes, minlength=len(names))
    used = int(np.count_nonzero(counts))
    volumes = f"{used} volume{'s' if used > 1 else ''}" + (f" of {len(names)}" if used < len(names) else "")
    text = (f"{len(real_set.crops)} crops from {volumes} "
            f"({', '.join(f'{c} from {name}' for c, name in zip(counts, names))})")
    if len(real_set.crops) < n:
        text += (f"; {n} were asked for, but the sampled regions hold only "
                 f"{sum(crop_positions(r, size) for r in regions)} distinct crop positions of side {size}")
    return text


def generate_set(generator: FrozenGenerator, n: int, size: int, periodic: bool = False, seed: int = 0,
                 keep_confidence: int = 3, progress: Progress = None) -> tuple[np.ndarray, np.ndarray]:
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
            _say(progress, f"generate: {i + 1}/{n} volumes ({_eta(i + 1, n, start)})")
    return np.stack(labels), np.stack(confidence)


def volume_sha256(volume: np.ndarray) -> str:
    """sha256 of a label volume's bytes in C order (the training data fingerprint of `porejax train`)."""
    return hashlib.sha256(np.ascontiguousarray(volume).tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class RealSource:
    """Where real crops come from and what the generator saw of the real volume."""

    sample_region: Region            # real crops are drawn here
    holdout: Region | None           # never trained on (excluded from the memorisation search)
    is_training_data: bool | None    # None: the checkpoint records no training data
    description: str


def real_source(meta: dict, volume: np.ndarray) -> RealSource:
    """Match the real volume to the checkpoint's training-data fingerprints (`meta["data"]`): crops come
    from its held-out region when training recorded one, else from the whole volume."""
    whole: Region = tuple((0, int(s)) for s in volume.shape)  # type: ignore[assignment]
    data = meta.get("data") or {}
    fingerprints = data.get("volumes") or []
    if not fingerprints:
        return RealSource(whole, None, None, "the checkpoint records no training data (e.g. made by `porejax init`): "
                          "crops come from the whole volume")
    digest = volume_sha256(volume)
    index = next((i for i, f in enumerate(fingerprints) if f.get("sha256") == digest), None)
    if index is None:
        return RealSource(whole, None, False, "not the checkpoint's training data: crops come from the whole volume")
    holdout = data.get("holdout") or {}
    regions, slices = holdout.get("regions") or [], int(holdout.get("slices") or 0)
    if slices <= 0 or index >= len(regions):
        return RealSource(whole, None, True, "the checkpoint was trained on this whole volume (no holdout): crops "
                          "come from the training data itself")
    axis = AXES.index(holdout.get("axis", "x"))
    box = [list(r) for r in whole]
    box[axis] = [int(regions[index][0]), int(regions[index][1])]
    region: Region = tuple(tuple(r) for r in box)  # type: ignore[assignment]
    return RealSource(region, region, True, f"training data: crops come from its held-out region "
                      f"{_region_text(region)} ({slices} slices along {AXES[axis]} never trained on)")


def memorisation_targets(names: Sequence[str], sources: Sequence[RealSource]) -> tuple[list[int], str]:
    """The real volumes the memorisation check searches, and what that search means (a phrase for the
    report): the checkpoint's training data among them (outside held-out regions), else all of them."""
    training = [i for i, s in enumerate(sources) if s.is_training_data]
    if training:
        quoted = ", ".join(f"`{names[i]}`" for i in training)
        text = (f"the real volume{'s' if len(training) > 1 else ''} that {'are' if len(training) > 1 else 'is'} the "
                f"checkpoint's training data ({quoted}"
                f"{', outside the held-out regions' if any(sources[i].holdout for i in training) else ''})")
        others = len(sources) - len(training)
        if others:
            text += (f"; the other {others} real volume{'s are' if others > 1 else ' is'} not training data and "
                     "not searched")
        return training, text
    several = len(sources) > 1
    why = ("the checkpoint records no training data" if sources[0].is_training_data is None else
           f"{'none of them is' if several else 'not'} the checkpoint's training data")
    quoted = ", ".join(f"`{name}`" for name in names)
    return list(range(len(sources))), (f"the real volume{'s' if several else ''} {quoted} ({why}: this measures "
                                       f"similarity to {'them' if several else 'it'}, not memorisation of the "
                                       "training data)")


def _region_text(region: Region) -> str:
    return " × ".join(f"{AXES[a]} ∈ [{start}, {stop})" for a, (start, stop) in enumerate(region))


def non_overlapping_crops(region: Region, size: int) -> int:
    return int(np.prod([(stop - start) // size for start, stop in region]))


# --- generator studies for the figures ---------------------------------------------------------------
def periodic_flux_study(generator: FrozenGenerator, size: int, seed: int) -> dict:
    """Fig. 8: a periodic volume (side: `size` rounded down to the period unit), its most abundant phase's
    diffusion along x with mirror vs periodic side boundaries: D_rel of both and the flux fields."""
    unit = generator.config.period_unit
    side = max(unit, size // unit * unit)
    volume, _ = generator.generate(generator.latent(seed, generator.latent_size_for(side, AXES)), AXES)
    counts = [np.count_nonzero(volume == lab) for lab in generator.phase_map.labels]
    phase = int(np.argmax(counts))
    mask = volume == generator.phase_map.labels[phase]
    solves = {side_bc: metrics.tortuosity(mask, axis=0, side_boundary=side_bc, return_field=True)
              for side_bc in ("mirror", "periodic")}
    return {"volume": volume, "phase": phase, "side": side, "seed": seed,
            "relative_diffusivity": {k: float(r.relative_diffusivity) for k, r in solves.items()},
            "flux": {k: np.asarray(r.flux) for k, r in solves.items()}}


def time_generation(generator: FrozenGenerator, latent_sides: Sequence[int] = (1, 2, 3, 4, 5), repeats: int = 2,
                    progress: Progress = None) -> dict:
    """Seconds to generate a zero-padded volume per latent side (best of `repeats` after a compiling
    warm-up) and the least-squares line seconds = intercept + slope * Mvoxels (paper S7)."""
    voxels, seconds = [], []
    for a in latent_sides:
        z = generator.latent(0, a)
        generator.generate(z)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            generator.generate(z)
            best = min(best, time.perf_counter() - start)
        side = generator.config.output_side(a, False)
        voxels.append(side ** 3)
        seconds.append(best)
        _say(progress, f"generation time: {side}^3 in {best:.3f} s")
    x, y = np.asarray(voxels) / 1e6, np.asarray(seconds)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1 - np.sum(residual ** 2) / total) if total > 0 else 1.0
    return {"voxels": voxels, "seconds": seconds, "slope_s_per_mvoxel": float(slope), "intercept_s": float(intercept),
            "r2": r2}


# --- the report document (rendered to markdown and HTML) -----------------------------------------------
@dataclasses.dataclass
class _Document:
    blocks: list[tuple] = dataclasses.field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows]))

    def figure(self, name: str, caption: str, png: bytes) -> None:
        self.blocks.append(("figure", name, caption, png))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "h":
                out.append("#" * block[1] + " " + block[2])
            elif block[0] == "p":
                out.append(block[1])
            elif block[0] == "table":
                out.append("\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                                     for row in [block[1], ["---"] * len(block[1]), *block[2]]))
            else:
                out.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text: str) -> str:
            parts = html.escape(text).split("**")
            return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

        out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
               "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
               "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #bbb;"
               "padding:3px 8px;text-align:left}th{background:#eee}img{max-width:100%}figcaption{font-style:italic}"
               "</style></head><body>"]
        for block in self.blocks:
            if block[0] == "h":
                out.append(f"<h{block[1]}>{inline(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                out.append(f"<p>{inline(block[1])}</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{inline(c)}</th>" for c in block[1])
                body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                data = base64.b64encode(block[3]).decode("ascii")
                out.append(f"<figure><img alt='{html.escape(block[1])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{inline(block[2])}</figcaption></figure>")
        return "\n".join(out + ["</body></html>"]) + "\n"


TABLE_HEADER = ("metric", "phase", "real (mean ± std)", "generated (mean ± std)", "Δmean / real std",
                "std ratio (gen / real)", "KS D", "p", "p (Bonferroni)", "verdict", "note")


def table_row(row: dict) -> list[str]:
    """The cells of one statistics-table row, formatted from the row's numbers (metrics.json "table")."""
    title = row["title"] + (f" ({row['unit']})" if row["unit"] else "")
    return [title, row["phase"] or "all three", fmt_mean_std(row["real"]["mean"], row["real"]["std"]),
            fmt_mean_std(row["generated"]["mean"], row["generated"]["std"]), fmt(row["delta_mean_in_real_std"]),
            fmt(row["std_ratio"]), fmt(row["ks_statistic"]), fmt(row["p_value"]), fmt(row["p_adjusted"]),
            row["verdict"], row["note"]]


def _paper_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The paper's Tables 3/4 layout: a row per set, a column per metric with the phases joined by ' / '."""
    columns = [m for m in METRICS if any(r["metric"] == m.key for r in rows)]
    header = ["set"] + [m.title.split(" (")[0] + (f" ({m.unit})" if m.unit else "") for m in columns]
    body = []
    for name in ("real", "generated"):
        cells = [name]
        for m in columns:
            cells.append(" / ".join(fmt_mean_std(r[name]["mean"], r[name]["std"]) for r in rows if r["metric"] == m.key))
        body.append(cells)
    return header, body


def render_report(results: dict, figures: dict[str, tuple[str, bytes]], phase_map: PhaseMap) -> _Document:
    """The report document from the results (metrics.json content) and the figures {file: (caption, png)}."""
    doc = _Document()
    s = results["settings"]
    doc.heading("porejax compare: real vs generated microstructures", 1)
    doc.text(f"Checkpoint: `{s['checkpoint']}` (step {s['step']}). {s['real_crops']} real crops and {s['n']} "
             f"generated volumes of side {s['size']} voxels ({s['size'] * s['voxel_size_um']:.4g} µm, voxel "
             f"{s['voxel_size_um']:.6g} µm); generated volumes "
             f"{'periodic in x, y, z' if s['periodic'] else 'non-periodic (centre crops)'}; seed {s['seed']}.")
    doc.text(f"**Real set: {s['real_set']}.**")
    doc.table(["real volume", "shape", "crops", "distinct crop positions", "non-overlapping crops", "source"],
              [[f"`{v['file']}`", " x ".join(map(str, v["shape"])), str(v["crops"]), str(v["distinct_crop_positions"]),
                str(v["non_overlapping_crops"]), v["source"]] for v in s["real"]])
    doc.text("Real crops lie at random, distinct positions inside each volume's sampled region and may overlap; "
             "crop i comes from volume i mod V (skipping volumes whose positions are used up).")
    doc.text("Metrics of every volume are those of a non-periodic volume (outer faces and wrap-around paths never "
             "count); D_rel is the mean over x, y and z of the diffusion solve with mirror side boundaries; std is "
             "the sample standard deviation (ddof = 1).")
    phases = " / ".join(phase_map.name(i) for i in range(phase_map.n_phases))
    doc.heading("Summary (layout of the paper's Tables 3/4)")
    doc.text(f"Phases in each cell: {phases}.")
    doc.table(*_paper_table(results["table"]))
    doc.heading("Statistics per metric")
    doc.table(TABLE_HEADER, [table_row(r) for r in results["table"]])
    matches = sum(r["verdict"] == "matches" for r in results["table"])
    doc.text(f"**{matches} of {len(results['table'])} metrics match.** {VERDICT_RULE}")
    mem = results["memorisation"]
    doc.heading("Memorisation check")
    doc.table(["set", "volumes", "median nearest agreement", "95th percentile", "max", "exact copies (≥ 0.99)"],
              [[name, str(count), fmt(part["median"]), fmt(part["q95"]), fmt(part["max"]),
                "n/a" if part["exact_copy_rate"] is None else f"{part['exact_copy_rate']:.1%}"]
               for name, part, count in (("generated", mem["generated"], len(mem["generated"]["nearest_agreement"])),
                                         ("real baseline", mem["baseline"], mem["baseline"]["crops_with_a_training_crop"]))])
    doc.text(f"**Verdict: {mem['verdict']}.** Nearest sub-volume by voxel agreement (fraction of equal voxels), "
             f"searched by FFT cross-correlation over {mem['searched_fraction_of_training_positions']:.1%} of all crop "
             f"positions of {mem['searched']}. The baseline of a real crop is its nearest searched crop that does not "
             "overlap it (real crops without one are left out). " + mem["rule"])
    band = results["two_point_correlation"]["band"]
    doc.heading("Two-point correlation inside the real band")
    doc.table(["phase", "axis", "lags inside real mean ± std", "max |Δ| (real std)"],
              [[r["phase"], r["axis"], f"{r['fraction_inside']:.0%}", fmt(r["max_gap_in_real_std"], 2)] for r in band])
    if "seams" in results:
        doc.heading("Seams of the periodic generated volumes")
        doc.table(["axis", "seam mismatch", "interior mismatch", "ratio", "same-phase interior", "same-phase ratio"],
                  [[axis, fmt(v["seam_mismatch"], 4), fmt(v["interior_mismatch"], 4), fmt(v["ratio"], 3),
                    fmt(v.get("same_phase_interior_mismatch"), 4), fmt(v.get("same_phase_ratio"), 3)]
                   for axis, v in results["seams"].items()])
        doc.text("Fraction of voxels whose label differs across the wrap seam (last vs first slice) and, on "
                 "average, between neighbouring interior slices; a ratio of 1 is a seamless tiling. Same-phase: "
                 "only the interior pairs at the seam's position modulo the generator's period unit, which "
                 "separates the seam from any variation of the structure within the period unit.")
    if "periodic_boundaries" in results:
        pb = results["periodic_boundaries"]
        doc.heading("Periodic volumes and side boundaries")
        doc.text(f"A periodic generated volume of side {pb['side']} (seed {pb['seed']}); diffusion along x through "
                 f"{pb['phase']}: D_rel = {fmt(pb['relative_diffusivity']['mirror'], 4)} with mirror side boundaries, "
                 f"{fmt(pb['relative_diffusivity']['periodic'], 4)} with periodic ones.")
    if "generation_time" in results:
        gt = results["generation_time"]
        doc.heading("Generation time")
        doc.text(f"{fmt(gt['slope_s_per_mvoxel'])} s per million voxels (intercept {fmt(gt['intercept_s'])} s), R² = "
                 f"{gt['r2']:.4f}, over sides {', '.join(str(round(v ** (1 / 3))) for v in gt['voxels'])}.")
    doc.heading("Figures")
    for name, (caption, png) in figures.items():
        doc.figure(name, caption, png)
    doc.text(f"Machine-readable numbers: `metrics.json` (infinite values as \"inf\", undefined as null). "
             f"Made by porejax in {results['seconds']:.0f} s.")
    return doc


# --- the whole comparison --------------------------------------------------------------------------------
def compare_arrays(real: np.ndarray, generated: np.ndarray, phase_map: PhaseMap, voxel_size: float,
                   progress: Progress = None) -> tuple[SetMetrics, SetMetrics, list[dict]]:
    """Characterise two sets of label volumes (B, S, S, S) and compare them: (real, generated, table rows)."""
    real_metrics = characterise_set(real, phase_map, voxel_size, progress, "real")
    gen_metrics = characterise_set(generated, phase_map, voxel_size, progress, "generated")
    return real_metrics, gen_metrics, compare_metrics(real_metrics, gen_metrics, phase_map)


def compare(real: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray],
            checkpoint: str | os.PathLike, n: int = 100, size: int = 64,
            voxel_size: float | None = None, periodic: bool = False, seed: int = 0,
            out: str | os.PathLike = "compare_report", max_blocks: int = 8,
            timing_latent_sides: Sequence[int] = (1, 2, 3, 4, 5), progress: Progress = print,
            step: int | None = None) -> dict:
    """Compare up to `n` random real crops of side `size` with `n` generated volumes; write a report to `out`.

    real: a label volume file (TIFF / .npy) or array, or a sequence of them (`random_crops` spreads the crops
    over the volumes; with fewer distinct crop positions than `n`, the real set is smaller); each volume is
    matched to the checkpoint's training data (`real_source`). checkpoint: a checkpoint directory; step:
    its saved step to use (default the newest).
    voxel_size (um): default the checkpoint PhaseMap's. periodic: generate periodic volumes (size: a multiple
    of the period unit). seed: real crop positions and latents (volume i uses seed + i). max_blocks:
    memorisation search budget (`memorisation_check`). timing_latent_sides: latent sides timed for the
    generation-time fit. Writes OUT/report.md, OUT/report.html (figures embedded), OUT/metrics.json and
    OUT/*.png. Returns the metrics.json content.
    """
    started = time.perf_counter()
    if int(n) != n or n < 2:
        raise PorejaxError(f"--n must be at least 2 volumes per set (a std needs two), got {n}")
    if int(size) != size or size < 4:
        raise PorejaxError(f"--size must be a side of at least 4 voxels, got {size}")
    meta = ckpt.read_metadata(checkpoint)
    generator = load_generator(checkpoint, step)
    phase_map = generator.phase_map
    voxel_size = phase_map.voxel_size if voxel_size is None else voxel_size
    if voxel_size is None:
        raise PorejaxError("no voxel size: the checkpoint's PhaseMap has none; pass --voxel-size in micrometres")
    if not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0):
        raise PorejaxError(f"voxel size must be a positive number of micrometres, got {voxel_size!r}")
    names, volumes = load_real_volumes(real, phase_map)
    generator.latent_size_for(size, AXES if periodic else "")  # a bad periodic size fails before any work
    sources = [real_source(meta, volume) for volume in volumes]
    regions = [source.sample_region for source in sources]
    real_set = random_crops(volumes, n, size, seed, regions, [f"real volume {name}" for name in names])
    if len(real_set.crops) < 2:
        raise PorejaxError(f"the real volumes hold only {len(real_set.crops)} distinct crop position of side {size} "
                           "but a std needs two real crops: pass more real volumes (--real a.tif b.tif ...) or a "
                           "smaller --size")
    searched, searched_text = memorisation_targets(names, sources)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    generated, confidence = generate_set(generator, n, size, periodic, seed, progress=progress)
    real_m, gen_m, rows = compare_arrays(real_set.crops, generated, phase_map, voxel_size, progress)
    s2 = s2_summary(real_m, gen_m, voxel_size)
    memorisation = memorisation_check(
        generated, real_set.crops, [volumes[i] for i in searched], phase_map, real_set.positions,
        [searched.index(v) if v in searched else -1 for v in real_set.volumes], [sources[i].holdout for i in searched],
        max_blocks=max_blocks, seed=seed, progress=progress)
    memorisation.update(searched=searched_text, searched_volumes=[names[i] for i in searched])
    _say(progress, "figures: periodic volume, diffusion with mirror / periodic sides, interpolation, timing")
    flux = periodic_flux_study(generator, size, seed + n)
    latent_shape = generator.latent_size_for(size)
    strip = [generator.generate(z, size=size)[0] for z in interpolate_latents(
        generator.latent(seed, latent_shape), generator.latent(seed + 1, latent_shape), 7)]
    timing = time_generation(generator, timing_latent_sides, progress=progress)

    phase_name = phase_map.name(flux["phase"])
    box_entries = [(m.title.split(" (")[0] + ("" if p is None else f": {phase_map.name(p)}"), m.unit,
                    real_m.values(m.key, p), gen_m.values(m.key, p))
                   for m, p in table_entries(phase_map, real_m.tpb_density is not None)]
    figure_specs = {
        "slices.png": ("Real (top) and generated (bottom) volumes: y-z slices at mid x (paper Fig. 3).",
                       lambda: figs.slices(real_set.crops, generated, phase_map, voxel_size)),
        "boxplots.png": ("Distribution of each metric over the real and generated volumes (paper Figs. 4/6).",
                         lambda: figs.box_plots(box_entries)),
        "two_point_correlation.png": ("S2(r)/S2(0) per phase along x, y, z: means, real ±1 std band (paper Figs. 5/7).",
                                      lambda: figs.two_point_correlation(s2, phase_map)),
        "diffusivity_vs_fraction.png": ("Relative diffusivity against volume fraction per phase (paper S2/S3).",
                                        lambda: figs.diffusivity_vs_fraction(
                                            real_m.volume_fraction, real_m.relative_diffusivity.mean(axis=2),
                                            gen_m.volume_fraction, gen_m.relative_diffusivity.mean(axis=2), phase_map)),
        "periodic_boundaries.png": (f"A periodic generated volume tiled 2x2 (seams dashed) and the flux along x in "
                                    f"{phase_name} on the side face z = 0 with mirror vs periodic side boundaries "
                                    "(paper Fig. 8).",
                                    lambda: figs.periodic_tiling_and_flux(
                                        flux["volume"], flux["flux"]["mirror"], flux["flux"]["periodic"], phase_map,
                                        voxel_size, flux["phase"], flux["relative_diffusivity"])),
        "interpolation.png": ("Volumes generated along a spherical interpolation between two latents (paper S8).",
                              lambda: figs.interpolation_strip(strip, phase_map, voxel_size)),
        "confidence.png": ("Generated volumes and their confidence, the maximum phase probability (paper S9).",
                           lambda: figs.confidence_maps(generated[:len(confidence)], confidence, phase_map,
                                                        voxel_size)),
        "generation_time.png": ("Generation time against the number of voxels with a linear fit (paper S7).",
                                lambda: figs.generation_time(timing["voxels"], timing["seconds"],
                                                             timing["slope_s_per_mvoxel"], timing["intercept_s"],
                                                             timing["r2"])),
    }
    figures = {name: (caption, figs.save_png(build(), out / name)) for name, (caption, build) in figure_specs.items()}
    _say(progress, f"figures: wrote {len(figures)} PNG files")

    results = jsonable({
        "format": FORMAT, "version": FORMAT_VERSION, "json_conventions": "inf as \"inf\"/\"-inf\", undefined as null",
        "settings": {"real": [{"file": name, "shape": list(volume.shape), "source": source.description,
                               "region": source.sample_region, "holdout": source.holdout,
                               "is_training_data": source.is_training_data, "crops": int(np.sum(real_set.volumes == i)),
                               "distinct_crop_positions": crop_positions(source.sample_region, size),
                               "non_overlapping_crops": non_overlapping_crops(source.sample_region, size)}
                              for i, (name, volume, source) in enumerate(zip(names, volumes, sources))],
                     "real_set": real_set_text(names, real_set, n, regions, size), "real_crops": len(real_set.crops),
                     "real_crop_volumes": real_set.volumes, "real_crop_positions": real_set.positions,
                     "checkpoint": str(checkpoint), "step": generator.step, "n": n, "size": size,
                     "voxel_size_um": voxel_size, "periodic": periodic, "seed": seed},
        "phases": [{"label": lab, "name": phase_map.name(i)} for i, lab in enumerate(phase_map.labels)],
        "verdict_rule": VERDICT_RULE, "table": rows,
        "samples": {"real": real_m.to_json(), "generated": gen_m.to_json()},
        "two_point_correlation": {"r_um": s2["r_um"], "axes": list(AXES), "real": s2["real"],
                                  "generated": s2["generated"], "band": s2_band_summary(s2, phase_map)},
        **({"seams": seam_continuity(generated, generator.config.period_unit)} if periodic else {}),
        "memorisation": memorisation,
        "periodic_boundaries": {"side": flux["side"], "seed": flux["seed"], "phase": phase_name, "axis": "x",
                                "relative_diffusivity": flux["relative_diffusivity"]},
        "generation_time": timing, "figures": list(figures), "seconds": time.perf_counter() - started})
    doc = render_report(results, figures, phase_map)
    for name, text in (("metrics.json", json.dumps(results, indent=1, allow_nan=False)),
                       ("report.md", doc.markdown()), ("report.html", doc.html("porejax compare report"))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    _say(progress, f"wrote {out / 'report.md'}, report.html, metrics.json ({results['seconds']:.0f} s)")
    return results
