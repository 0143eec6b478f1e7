"""Statistics of two sets of per-volume metrics: means, spreads, the two-sample KS test and the verdict.

Also the two-point-correlation band and the seam continuity of periodic volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

from porejax.axes import AXES
from porejax.compare.sets import METRICS, Metric, metric_values, unit_text
from porejax.errors import PorejaxError
from porejax.metrics import Characterisation
from porejax.metrics.position import face_profile
from porejax.volume import PhaseMap

ALPHA = 0.05
VERDICT_RULE = (
    "A metric **matches** when the Kolmogorov-Smirnov test does not reject equal distributions "
    f"(Bonferroni-adjusted p = min(1, p x number of metrics) >= {ALPHA}) AND the means differ by less than one "
    "real standard deviation (|Δmean| < 1 real std); otherwise it **differs**. The std ratio (generated / real) "
    "is reported separately: below 0.5 the generated set is much less diverse than the real one (mode "
    "collapse), above 2 much more. Caveat: real crops of one volume overlap and are correlated, which makes "
    "the test somewhat liberal (more 'differs' than for independent samples)."
)


class KSResult(NamedTuple):
    statistic: float  # D = sup |F_1 - F_2| of the two empirical CDFs
    pvalue: float  # two-sided


def ks_2samp(a: Sequence[float], b: Sequence[float]) -> KSResult:
    """Two-sided two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`: exact p-values for samples of
    up to 10000 values, asymptotic above) of two non-empty samples of finite values."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise PorejaxError(f"the KS test needs two non-empty samples of finite values, got sizes {a.size}, {b.size}")
    result = stats.ks_2samp(a, b)
    return KSResult(float(result.statistic), float(result.pvalue))


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
    return {
        "real": {"mean": mean_r, "std": std_r, "n": int(np.size(real))},
        "generated": {"mean": mean_g, "std": std_g, "n": int(np.size(generated))},
        "delta_mean_in_real_std": delta,
        "std_ratio": ratio,
        "ks_statistic": ks.statistic,
        "p_value": ks.pvalue,
        "p_adjusted": p_adjusted,
        "verdict": verdict,
        "note": note,
    }


def table_entries(phase_map: PhaseMap, has_tpb: bool) -> list[tuple[Metric, int | None]]:
    """(metric, phase index or None) for every row of the comparison table, in table order."""
    entries = [(m, p) for m in METRICS if m.per_phase for p in range(phase_map.n_phases)]
    return entries + ([(METRICS[-1], None)] if has_tpb else [])


def compare_metrics(
    real: Characterisation, generated: Characterisation, phase_map: PhaseMap, length: str = "µm"
) -> list[dict]:
    """One row (dict, see `compare_values`, plus metric / phase / unit) per metric and phase; length: the
    unit of length of the sets' values ("µm", or "voxel" without a voxel size)."""
    entries = table_entries(phase_map, real.tpb_density is not None)
    rows = []
    for metric, phase in entries:
        row = compare_values(
            metric_values(real, metric.key, phase), metric_values(generated, metric.key, phase), len(entries)
        )
        rows.append(
            {
                "metric": metric.key,
                "title": metric.title,
                "unit": unit_text(metric, length),
                "phase": None if phase is None else phase_map.name(phase),
                "label": None if phase is None else phase_map.labels[phase],
                **row,
            }
        )
    return rows


def s2_summary(real: Characterisation, generated: Characterisation) -> dict:
    """Normalised S2(r)/S2(0) per set: mean and std over volumes, (P, 3, L) each; r (L,) the lags in the
    sets' unit of length (um, or voxels when characterised with voxel size 1 for an unknown size)."""
    out = {"r": real.tpcf_lag_um}
    for name, data in (("real", real), ("generated", generated)):
        s2 = data.tpcf / np.where(data.tpcf[..., :1] > 0, data.tpcf[..., :1], 1)
        out[name] = {"mean": s2.mean(axis=0), "std": s2.std(axis=0, ddof=1) if len(s2) > 1 else 0 * s2[0]}
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
            rows.append(
                {
                    "phase": phase_map.name(phase),
                    "axis": name,
                    "fraction_inside": float(inside.mean()),
                    "max_gap_in_real_std": float(in_std.max()),
                    "all_inside": bool(inside.all()),
                }
            )
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
        out[name] = {
            "seam_mismatch": seam,
            "interior_mismatch": interior,
            "ratio": seam / interior if interior > 0 else None,
        }
        if period:
            same = float(pairs[(w.shape[1] - 1) % period :: period].mean())
            out[name].update(same_phase_interior_mismatch=same, same_phase_ratio=seam / same if same > 0 else None)
    return out


def face_band_summary(real: np.ndarray, generated: np.ndarray, phase_map: PhaseMap, band: int = 4) -> dict:
    """Phase fractions against the distance from the nearest face, real and generated sets (B, S, S, S).

    A sample of a stationary material has the same expected fractions in every voxel; a generator that is
    unfaithful at the faces of its output shows a face band. Per band of `band` voxels and phase: the mean
    over the volumes of each set and its standard error; a generated band "deviates" where it differs from
    the generated set's overall fraction by more than 4 standard errors + 0.01.
    """
    labels = phase_map.labels
    real_p, gen_p = (face_profile(v, band=band, phases=labels) for v in (real, generated))
    overall = np.stack([(generated == lab).mean(axis=(1, 2, 3)) for lab in labels], -1).mean(0)
    gen_mean, gen_se = gen_p.fractions.mean(0), gen_p.fractions.std(0, ddof=1) / np.sqrt(len(generated))
    deviates = np.abs(gen_mean - overall) > 4 * gen_se + 0.01
    return {
        "band_voxels": band,
        "band_start": gen_p.band_start.tolist(),
        "phases": [phase_map.name(i) for i in range(phase_map.n_phases)],
        "real_mean": real_p.fractions.mean(0).tolist(),
        "generated_mean": gen_mean.tolist(),
        "generated_se": gen_se.tolist(),
        "generated_overall": overall.tolist(),
        "deviating_bands": int(deviates.any(axis=1).sum()),
        "rule": "a generated band deviates where its fraction differs from the set's overall fraction by more "
        "than 4 standard errors + 0.01 (any phase)",
    }
