"""`compare`: sample the real and generated sets, compare them, and write the report (report.md, report.html
with the figures embedded, metrics.json, the figures as PNG).

The steps are functions of explicit values: `real_set` (crops and provenance), `generate_set`,
`set_statistics` (per generated set: metrics, table, S2), `memorisation`, `generator_studies`,
`report_figures`, `results_json`, `write_report`. Another generated set (e.g. non-periodic volumes beside
periodic ones) is one more `generate_set` + `set_statistics` pair.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from porejax import checkpoint as ckpt
from porejax import figures as figs
from porejax import jsonio
from porejax.axes import AXES
from porejax.compare.document import render_report
from porejax.compare.memorisation import memorisation_check
from porejax.compare.progress import Progress, say
from porejax.compare.sampling import (
    RealCrops,
    RealSource,
    crop_positions,
    generate_set,
    load_real_volumes,
    memorisation_targets,
    non_overlapping_crops,
    random_crops,
    real_set_text,
    real_source,
)
from porejax.compare.sets import characterise_set, length_unit, metric_values, samples_json
from porejax.compare.statistics import (
    VERDICT_RULE,
    compare_metrics,
    face_band_summary,
    s2_band_summary,
    s2_summary,
    seam_continuity,
    table_entries,
)
from porejax.compare.studies import periodic_flux_figure, periodic_flux_study, time_generation
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator, load_generator
from porejax.latents import interpolate_latents
from porejax.metrics import Characterisation
from porejax.volume import PhaseMap, atomic_path

FORMAT = "porejax-compare"
FORMAT_VERSION = 3  # 3: infinity as JSON Infinity; lengths in settings.length_unit (voxel without a voxel size)


@dataclasses.dataclass(frozen=True)
class RealSet:
    """The real volumes, what the generator saw of each, and the crops drawn from them."""

    names: list[str]
    volumes: list[np.ndarray]
    sources: list[RealSource]
    crops: RealCrops
    searched: list[int]  # indices of the volumes the memorisation check searches
    searched_text: str


@dataclasses.dataclass(frozen=True)
class SetStatistics:
    """One generated set against the real one: per-volume metrics of both, the table rows and S2."""

    real: Characterisation
    generated: Characterisation
    table: list[dict]
    s2: dict
    face_bands: dict


def check_voxel_size(voxel_size: float | None, phase_map: PhaseMap) -> float | None:
    """The voxel size in um to report with: the given one, else the checkpoint's, else None (per voxel)."""
    voxel_size = phase_map.voxel_size if voxel_size is None else voxel_size
    if voxel_size is not None and not (
        isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size) and voxel_size > 0
    ):
        raise PorejaxError(f"voxel size must be a positive number of micrometres, got {voxel_size!r}")
    return voxel_size


def real_set(real, meta: dict, phase_map: PhaseMap, n: int, size: int, seed: int) -> RealSet:
    """Read the real volumes, match them to the checkpoint's training data and draw up to `n` crops."""
    names, volumes = load_real_volumes(real, phase_map)
    sources = [real_source(meta, volume) for volume in volumes]
    regions = [source.sample_region for source in sources]
    crops = random_crops(volumes, n, size, seed, regions, [f"real volume {name}" for name in names])
    if len(crops.crops) < 2:
        raise PorejaxError(
            f"the real volumes hold only {len(crops.crops)} distinct crop position of side {size} "
            "but a std needs two real crops: pass more real volumes (--real a.tif b.tif ...) or a "
            "smaller --size"
        )
    searched, searched_text = memorisation_targets(names, sources)
    return RealSet(names, volumes, sources, crops, searched, searched_text)


def set_statistics(
    real: np.ndarray,
    generated: np.ndarray,
    phase_map: PhaseMap,
    voxel_size: float | None,
    progress: Progress = None,
    real_metrics: Characterisation | None = None,
) -> SetStatistics:
    """Characterise a generated set (and the real one unless `real_metrics` is given) and compare them."""
    dx = 1.0 if voxel_size is None else voxel_size
    real_metrics = real_metrics or characterise_set(real, phase_map, dx, progress, "real")
    gen_metrics = characterise_set(generated, phase_map, dx, progress, "generated")
    table = compare_metrics(real_metrics, gen_metrics, phase_map, length_unit(voxel_size))
    return SetStatistics(
        real_metrics,
        gen_metrics,
        table,
        s2_summary(real_metrics, gen_metrics),
        face_band_summary(real, generated, phase_map),
    )


def memorisation(
    real: RealSet, generated: np.ndarray, phase_map: PhaseMap, max_blocks: int, seed: int, progress: Progress = None
) -> dict:
    """The memorisation check of the generated volumes against the searched real volumes (`RealSet.searched`)."""
    searched = real.searched
    result = memorisation_check(
        generated,
        real.crops.crops,
        [real.volumes[i] for i in searched],
        phase_map,
        real.crops.positions,
        [searched.index(v) if v in searched else -1 for v in real.crops.volumes],
        [real.sources[i].holdout for i in searched],
        max_blocks=max_blocks,
        seed=seed,
        progress=progress,
    )
    result.update(searched=real.searched_text, searched_volumes=[real.names[i] for i in searched])
    return result


def generator_studies(
    generator: FrozenGenerator,
    size: int,
    strip_seed: int,
    flux_seed: int,
    timing_latent_sides: Sequence[int],
    progress: Progress = None,
) -> dict:
    """The figures' studies: periodic volume and side boundaries (latent `flux_seed`), an interpolation
    strip (between latents `strip_seed` and `strip_seed` + 1), generation time."""
    say(progress, "figures: periodic volume, diffusion with mirror / periodic sides, interpolation, timing")
    latent_shape = generator.latent_size_for(size)
    ends = generator.latent(strip_seed, latent_shape), generator.latent(strip_seed + 1, latent_shape)
    return {
        "flux": periodic_flux_study(generator, size, flux_seed),
        "strip": [generator.generate(z, size=size)[0] for z in interpolate_latents(*ends, 7)],
        "timing": time_generation(generator, timing_latent_sides, progress=progress),
    }


def report_figures(
    real: np.ndarray,
    generated: np.ndarray,
    confidence: np.ndarray,
    stats: SetStatistics,
    studies: dict,
    phase_map: PhaseMap,
    voxel_size: float | None,
) -> dict:
    """{file name: (caption, build)} of the report's figures; build() returns a matplotlib Figure."""
    dx, length = (1.0 if voxel_size is None else voxel_size), length_unit(voxel_size)
    real_m, gen_m, flux, timing = stats.real, stats.generated, studies["flux"], studies["timing"]
    box_entries = [
        (
            m.title.split(" (")[0] + ("" if p is None else f": {phase_map.name(p)}"),
            row["unit"],
            metric_values(real_m, m.key, p),
            metric_values(gen_m, m.key, p),
        )
        for (m, p), row in zip(table_entries(phase_map, real_m.tpb_density is not None), stats.table)
    ]
    return {
        "slices.png": (
            "Real (top) and generated (bottom) volumes: y-z slices at mid x (paper Fig. 3).",
            lambda: figs.slices(real, generated, phase_map, dx, length),
        ),
        "face_bands.png": (
            "Phase fractions against distance from the nearest face: generated (solid, ±2 standard "
            "errors) and real (dashed); a faithful generator has no face band.",
            lambda: figs.face_bands(stats.face_bands),
        ),
        "boxplots.png": (
            "Distribution of each metric over the real and generated volumes (paper Figs. 4/6).",
            lambda: figs.box_plots(box_entries),
        ),
        "two_point_correlation.png": (
            "S2(r)/S2(0) per phase along x, y, z: means, real ±1 std band (paper Figs. 5/7).",
            lambda: figs.two_point_correlation(stats.s2, phase_map, length),
        ),
        "diffusivity_vs_fraction.png": (
            "Relative diffusivity against volume fraction per phase (paper S2/S3).",
            lambda: figs.diffusivity_vs_fraction(
                real_m.volume_fraction,
                real_m.relative_diffusivity.mean(axis=2),
                gen_m.volume_fraction,
                gen_m.relative_diffusivity.mean(axis=2),
                phase_map,
            ),
        ),
        "periodic_boundaries.png": (
            f"A periodic generated volume tiled 2x2 (seams dashed) and the flux along x in "
            f"{phase_map.name(flux['phase'])} on the side face z = 0 with mirror vs periodic "
            "side boundaries (paper Fig. 8).",
            lambda: periodic_flux_figure(flux, phase_map, dx, length),
        ),
        "interpolation.png": (
            "Volumes generated along a spherical interpolation between two latents (paper S8).",
            lambda: figs.interpolation_strip(studies["strip"], phase_map, dx, length),
        ),
        "confidence.png": (
            "Generated volumes and their confidence, the maximum phase probability (paper S9).",
            lambda: figs.confidence_maps(generated[: len(confidence)], confidence, phase_map, dx, length),
        ),
        "generation_time.png": (
            "Generation time against the number of voxels with a linear fit (paper S7).",
            lambda: figs.generation_time(
                timing["voxels"], timing["seconds"], timing["slope_s_per_mvoxel"], timing["intercept_s"], timing["r2"]
            ),
        ),
    }


def results_json(
    real: RealSet,
    stats: SetStatistics,
    memorised: dict,
    studies: dict,
    settings: dict,
    phase_map: PhaseMap,
    seams: dict | None,
    figure_names: Sequence[str],
) -> dict:
    """The metrics.json content (plain Python values; `porejax.jsonio` writes it)."""
    size, flux = settings["size"], studies["flux"]
    volumes = [
        {
            "file": name,
            "shape": list(volume.shape),
            "source": source.description,
            "region": source.sample_region,
            "holdout": source.holdout,
            "is_training_data": source.is_training_data,
            "crops": int(np.sum(real.crops.volumes == i)),
            "distinct_crop_positions": crop_positions(source.sample_region, size),
            "non_overlapping_crops": non_overlapping_crops(source.sample_region, size),
        }
        for i, (name, volume, source) in enumerate(zip(real.names, real.volumes, real.sources))
    ]
    regions = [source.sample_region for source in real.sources]
    return jsonio.jsonable(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "json_conventions": jsonio.CONVENTIONS,
            "settings": {
                "real": volumes,
                "real_set": real_set_text(real.names, real.crops, settings["n"], regions, size),
                "real_crops": len(real.crops.crops),
                "real_crop_volumes": real.crops.volumes,
                "real_crop_positions": real.crops.positions,
                **settings,
            },
            "phases": [{"label": lab, "name": phase_map.name(i)} for i, lab in enumerate(phase_map.labels)],
            "verdict_rule": VERDICT_RULE,
            "table": stats.table,
            "samples": {"real": samples_json(stats.real), "generated": samples_json(stats.generated)},
            "two_point_correlation": {
                "r": stats.s2["r"],
                "axes": list(AXES),
                "real": stats.s2["real"],
                "generated": stats.s2["generated"],
                "band": s2_band_summary(stats.s2, phase_map),
            },
            "face_bands": stats.face_bands,
            **({"seams": seams} if seams is not None else {}),
            "memorisation": memorised,
            "periodic_boundaries": {
                "side": flux["side"],
                "seed": flux["seed"],
                "phase": phase_map.name(flux["phase"]),
                "axis": "x",
                "relative_diffusivity": flux["relative_diffusivity"],
            },
            "generation_time": studies["timing"],
            "figures": list(figure_names),
        }
    )


def write_report(out: Path, results: dict, figures: dict[str, tuple[str, bytes]], phase_map: PhaseMap) -> None:
    """OUT/metrics.json, OUT/report.md and OUT/report.html, each written atomically."""
    doc = render_report(results, figures, phase_map)
    jsonio.write(out / "metrics.json", results)
    for name, text in (("report.md", doc.markdown()), ("report.html", doc.html("porejax compare report"))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")


def compare(
    real: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray],
    checkpoint: str | os.PathLike,
    n: int = 100,
    size: int = 64,
    voxel_size: float | None = None,
    periodic: bool = False,
    seed: int = 0,
    out: str | os.PathLike = "compare_report",
    max_blocks: int = 8,
    timing_latent_sides: Sequence[int] = (1, 2, 3, 4, 5),
    progress: Progress = print,
    step: int | None = None,
) -> dict:
    """Compare up to `n` random real crops of side `size` with `n` generated volumes; write a report to `out`.

    real: a label volume file (TIFF / .npy) or array, or a sequence of them (`random_crops` spreads the crops
    over the volumes; with fewer distinct crop positions than `n`, the real set is smaller); each volume is
    matched to the checkpoint's training data (`real_source`). checkpoint: a checkpoint directory; step:
    its saved step to use (default the newest).
    voxel_size (um): default the checkpoint PhaseMap's; without either, lengths are voxel edges (surface
    areas per voxel, TPB per voxel^2) and the report says so. periodic: generate periodic volumes (size: a
    multiple of the period unit). seed: real crop positions and latents (volume i uses seed + i).
    max_blocks: memorisation search budget (`memorisation_check`). timing_latent_sides: latent sides timed
    for the generation-time fit. Returns the metrics.json content.
    """
    started = time.perf_counter()
    if int(n) != n or n < 2:
        raise PorejaxError(f"--n must be at least 2 volumes per set (a std needs two), got {n}")
    if int(size) != size or size < 4:
        raise PorejaxError(f"--size must be a side of at least 4 voxels, got {size}")
    meta = ckpt.read_metadata(checkpoint)
    generator = load_generator(checkpoint, step)
    phase_map = generator.phase_map
    voxel_size = check_voxel_size(voxel_size, phase_map)
    reals = real_set(real, meta, phase_map, n, size, seed)
    generator.latent_size_for(size, AXES if periodic else "")  # a bad periodic size fails before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    generated, confidence = generate_set(generator, n, size, periodic, seed, progress=progress)
    stats = set_statistics(reals.crops.crops, generated, phase_map, voxel_size, progress)
    memorised = memorisation(reals, generated, phase_map, max_blocks, seed, progress)
    studies = generator_studies(generator, size, seed, seed + n, timing_latent_sides, progress)
    specs = report_figures(reals.crops.crops, generated, confidence, stats, studies, phase_map, voxel_size)
    figures = {name: (caption, figs.save_png(build(), out / name)) for name, (caption, build) in specs.items()}
    say(progress, f"figures: wrote {len(figures)} PNG files")

    settings = {
        "checkpoint": str(checkpoint),
        "step": generator.step,
        "n": n,
        "size": size,
        "voxel_size_um": voxel_size,
        "length_unit": length_unit(voxel_size),
        "periodic": periodic,
        "seed": seed,
    }
    seams = seam_continuity(generated, generator.config.period_unit) if periodic else None
    results = results_json(reals, stats, memorised, studies, settings, phase_map, seams, list(figures))
    results["seconds"] = time.perf_counter() - started
    write_report(out, results, figures, phase_map)
    say(progress, f"wrote {out / 'report.md'}, report.html, metrics.json ({results['seconds']:.0f} s)")
    return results
