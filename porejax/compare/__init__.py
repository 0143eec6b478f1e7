"""Compare real and generated microstructures: statistics, memorisation check and the written report.

- `sets`: `characterise_set(volumes, phase_map, voxel_size)` -> `metrics.Characterisation` (per volume:
  volume fraction, specific surface area, tortuosity and relative diffusivity along x, y, z, TPB density,
  S2(r)), from `porejax.metrics`; `metric_values` picks a table metric's per-volume values;
- `statistics`: `compare_metrics(real, generated, phase_map)` -> one row per metric and phase (means, stds,
  Δmean / real std, std ratio, two-sample KS test, verdict by `VERDICT_RULE`), the S2 band, seam continuity;
- `memorisation`: `memorisation_check`, the nearest training sub-volume of every generated volume by voxel
  agreement against the same for real crops the generator never saw (the baseline);
- `sampling`: `random_crops` (the real set), provenance (`real_source`), `generate_set`;
- `studies`: the generator studies behind the figures; `document`: Markdown / HTML rendering;
- `run`: `compare(real, checkpoint, ...)`, which writes report.md, report.html, metrics.json and the
  figures (`porejax.figures`).
"""

from porejax.compare.memorisation import (
    EXACT_COPY_AGREEMENT,
    MIN_BASELINE_CROPS,
    memorisation_check,
    nearest_crop_agreement,
    region_box,
)
from porejax.compare.run import compare
from porejax.compare.sampling import (
    RealCrops,
    RealSource,
    crop_positions,
    generate_set,
    load_real_volumes,
    memorisation_targets,
    random_crops,
    real_set_text,
    real_source,
    volume_sha256,
)
from porejax.compare.sets import METRICS, characterise_set, metric_values
from porejax.compare.statistics import (
    ALPHA,
    VERDICT_RULE,
    KSResult,
    compare_metrics,
    compare_values,
    ks_2samp,
    s2_band_summary,
    s2_summary,
    seam_continuity,
)
from porejax.compare.studies import periodic_flux_figure, periodic_flux_study, time_generation

__all__ = [
    "ALPHA",
    "EXACT_COPY_AGREEMENT",
    "METRICS",
    "MIN_BASELINE_CROPS",
    "VERDICT_RULE",
    "KSResult",
    "RealCrops",
    "RealSource",
    "characterise_set",
    "metric_values",
    "compare",
    "compare_metrics",
    "compare_values",
    "crop_positions",
    "generate_set",
    "ks_2samp",
    "load_real_volumes",
    "memorisation_check",
    "memorisation_targets",
    "nearest_crop_agreement",
    "periodic_flux_figure",
    "periodic_flux_study",
    "random_crops",
    "real_set_text",
    "real_source",
    "region_box",
    "s2_band_summary",
    "s2_summary",
    "seam_continuity",
    "time_generation",
    "volume_sha256",
]
