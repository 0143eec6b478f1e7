"""How much smaller can a periodic volume be? D_rel with mirror vs periodic side boundaries (paper Fig. 8).

    python -m experiments.periodic_boundaries --checkpoint DIR [--out DIR] [--sides 32,48,64,96,128]
        [--samples 2] [--reference-side 192] [--reference-samples 1] [--phase NAME] [--seed 0]

For periodic generated volumes of side L (multiples of the checkpoint's period unit; other sides are
skipped), the relative diffusivity of one phase is solved along x, y and z twice on the same volumes:
with zero-flux (mirror) and with periodic side boundaries. Both are compared with a reference: the mean
D_rel (periodic sides, x, y, z) of a few large periodic volumes. Mirror sides cut the paths that leave
through a side face, a bias that shrinks with L; periodic sides remove it. The table reports, per L and
boundary condition, the bias, the RMS error and the relative RMS error against the reference, and the
smallest periodic side whose RMS error is at most the mirror one at L (with the ratio of voxel counts:
how much smaller the simulation can be for the same error).

Default phase: the most abundant one (best connected, fastest solves). Writes OUT/results.md,
OUT/results.json, OUT/figure8.png (tiling and flux maps) and OUT/error_vs_side.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from porejax import figures, jsonio, metrics
from porejax.errors import PorejaxError
from porejax.generate import load_generator
from porejax.compare import periodic_flux_figure, periodic_flux_study
from porejax.volume import atomic_path

BOUNDARIES = ("mirror", "periodic")


def _sides(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sides in voxels, got {text!r}") from None


def solve_all_axes(mask: np.ndarray, side_boundary: str) -> tuple[np.ndarray, float]:
    """D_rel along x, y, z (3,) of a binary volume and the seconds the three solves took."""
    start = time.perf_counter()
    drel = np.array(
        [float(metrics.tortuosity(mask, axis=a, side_boundary=side_boundary).relative_diffusivity) for a in range(3)]
    )
    return drel, time.perf_counter() - start


def periodic_volume(generator, side: int, seed: int) -> np.ndarray:
    volume, _ = generator.generate(generator.latent(seed, generator.latent_size_for(side, "xyz")), "xyz")
    return volume


def run(
    checkpoint: Path,
    out: Path,
    sides: list[int],
    samples: int,
    reference_side: int,
    reference_samples: int,
    phase: str | None,
    seed: int,
) -> dict:
    generator = load_generator(checkpoint)
    phase_map, unit = generator.phase_map, generator.config.period_unit
    voxel_size = phase_map.voxel_size or 1.0
    least = generator.smallest_periodic_side
    usable = [s for s in sides if s % unit == 0 and s >= least]
    for s in sorted(set(sides) - set(usable)):
        print(f"skipping side {s}: not a multiple of the period unit {unit} of at least {least}")
    if not usable:
        raise PorejaxError(
            f"no side is a multiple of the checkpoint's period unit {unit} of at least {least} (its smallest "
            "periodic side): pass --sides accordingly"
        )
    if reference_side % unit:
        raise PorejaxError(f"--reference-side {reference_side} is not a multiple of the period unit {unit}")
    out.mkdir(parents=True, exist_ok=True)

    reference_volumes = [
        periodic_volume(generator, reference_side, seed + 10_000 + i) for i in range(reference_samples)
    ]
    if phase is None:
        counts = [sum(np.count_nonzero(v == lab) for v in reference_volumes) for lab in phase_map.labels]
        index = int(np.argmax(counts))
    else:
        names = [phase_map.name(i) for i in range(phase_map.n_phases)]
        if phase not in names:
            raise PorejaxError(f"--phase {phase!r} is not one of the checkpoint's phases {names}")
        index = names.index(phase)
    label, name = phase_map.labels[index], phase_map.name(index)
    reference_values = []
    for i, volume in enumerate(reference_volumes):
        drel, seconds = solve_all_axes(volume == label, "periodic")
        reference_values.append(drel)
        print(
            f"reference {i + 1}/{reference_samples}: {reference_side}^3, D_rel({name}) x/y/z = "
            f"{np.round(drel, 4).tolist()} ({seconds:.0f} s)",
            flush=True,
        )
    reference_values = np.concatenate(reference_values)
    reference = float(reference_values.mean())
    if reference <= 0:
        raise PorejaxError(
            f"{name} does not span the {reference_side}^3 reference volumes (D_rel = 0): choose another --phase"
        )
    reference_sem = float(reference_values.std(ddof=1) / np.sqrt(reference_values.size))

    rows = []
    for side in usable:
        values = {bc: [] for bc in BOUNDARIES}
        seconds = {bc: 0.0 for bc in BOUNDARIES}
        for i in range(samples):
            mask = periodic_volume(generator, side, seed + side * 100 + i) == label
            for bc in BOUNDARIES:
                drel, t = solve_all_axes(mask, bc)
                values[bc].append(drel)
                seconds[bc] += t
        row = {"side": side, "voxels": side**3, "solves": samples * 3}
        for bc in BOUNDARIES:
            v = np.concatenate(values[bc])
            error = v - reference
            row[bc] = {
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)),
                "bias": float(error.mean()),
                "rms_error": float(np.sqrt(np.mean(error**2))),
                "relative_rms_error": float(np.sqrt(np.mean(error**2)) / reference),
                "seconds_per_solve": seconds[bc] / (samples * 3),
                "values": v,
            }
        rows.append(row)
        print(
            f"side {side}: D_rel mirror {row['mirror']['mean']:.4f} (rms err {row['mirror']['rms_error']:.4f}), "
            f"periodic {row['periodic']['mean']:.4f} (rms err {row['periodic']['rms_error']:.4f})",
            flush=True,
        )
    for row in rows:
        target = row["mirror"]["rms_error"]
        equal = [r["side"] for r in rows if r["periodic"]["rms_error"] <= target]
        row["smallest_periodic_side_with_error_at_most_mirror"] = min(equal) if equal else None
        row["voxel_ratio"] = row["voxels"] / min(equal) ** 3 if equal else None

    study = periodic_flux_study(generator, min(max(usable), 64), seed)
    fig8 = periodic_flux_figure(study, phase_map, voxel_size)
    figures.save_png(fig8, out / "figure8.png")
    figures.save_png(error_figure(rows, reference, name), out / "error_vs_side.png")
    results = {
        "checkpoint": str(checkpoint),
        "step": generator.step,
        "phase": name,
        "label": label,
        "period_unit": unit,
        "samples_per_side": samples,
        "axes": "x, y, z",
        "reference": {
            "side": reference_side,
            "volumes": reference_samples,
            "side_boundary": "periodic",
            "relative_diffusivity": reference,
            "standard_error": reference_sem,
            "values": reference_values,
        },
        "rows": rows,
        "figure8": {
            "side": study["side"],
            "phase": phase_map.name(study["phase"]),
            "relative_diffusivity": study["relative_diffusivity"],
        },
    }
    results = jsonio.jsonable(results)
    jsonio.write(out / "results.json", results)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(results))
    print(f"wrote {out / 'results.md'}, results.json, figure8.png, error_vs_side.png")
    return results


def markdown(results: dict) -> str:
    ref = results["reference"]
    lines = [
        "# D_rel of periodic volumes: mirror vs periodic side boundaries",
        "",
        f"Checkpoint `{results['checkpoint']}` (step {results['step']}), phase **{results['phase']}**, "
        f"{results['samples_per_side']} generated periodic volumes per side, D_rel along x, y and z of each "
        f"(so {3 * results['samples_per_side']} values per cell). Reference: mean D_rel of "
        f"{ref['volumes']} periodic {ref['side']}^3 volumes (periodic sides, x, y, z) = "
        f"{ref['relative_diffusivity']:.4f} ± {ref['standard_error']:.4f} (standard error).",
        "",
        "| side L | D_rel mirror | D_rel periodic | bias mirror | bias periodic | rel. RMS error mirror | "
        "rel. RMS error periodic | s / solve (mirror, periodic) | smallest periodic L with RMS error ≤ mirror's | "
        "voxel ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        m, p = r["mirror"], r["periodic"]
        smallest = r["smallest_periodic_side_with_error_at_most_mirror"]
        ratio = "n/a" if r["voxel_ratio"] is None else f"{r['voxel_ratio']:.2g}x"
        lines.append(
            f"| {r['side']} | {m['mean']:.4f} ± {m['std']:.4f} | {p['mean']:.4f} ± {p['std']:.4f} | "
            f"{m['bias']:+.4f} | {p['bias']:+.4f} | {100 * m['relative_rms_error']:.1f}% | "
            f"{100 * p['relative_rms_error']:.1f}% | {m['seconds_per_solve']:.2f}, "
            f"{p['seconds_per_solve']:.2f} | {smallest if smallest is not None else 'none tested'} | {ratio} |"
        )
    lines += [
        "",
        "Bias = mean(D_rel - reference); RMS error includes the sample-to-sample spread of small volumes "
        "(both boundary conditions are solved on the same volumes, so their difference is the boundary "
        "effect alone). Voxel ratio: voxels of the mirror volume / voxels of the smallest periodic volume "
        "with an RMS error at most as large.",
        "",
    ]
    return "\n".join(lines)


def error_figure(rows: list[dict], reference: float, phase: str):
    """Relative RMS error and |bias| of D_rel against the side, per boundary condition (log scale)."""
    fig = figures.new_figure(5.5, 3.8)
    ax = fig.subplots()
    sides = [r["side"] for r in rows]
    for bc, marker, colour in zip(BOUNDARIES, ("o", "s"), ("#3b7dd8", "#d8453b")):
        ax.plot(
            sides,
            [100 * r[bc]["relative_rms_error"] for r in rows],
            marker=marker,
            color=colour,
            label=f"{bc} sides: RMS error of one volume",
        )
        ax.plot(
            sides,
            [100 * abs(r[bc]["bias"]) / reference for r in rows],
            marker=marker,
            color=colour,
            ls=":",
            label=f"{bc} sides: |bias| of the mean",
        )
    ax.set_xlabel("side L of the periodic volume (voxels)")
    ax.set_ylabel(f"error of D_rel({phase}) vs reference (%)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("D_rel error vs volume size")
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.periodic_boundaries", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("experiments/results/periodic_boundaries"))
    p.add_argument("--sides", type=_sides, default=[32, 48, 64, 96, 128], help="comma-separated sides L in voxels")
    p.add_argument("--samples", type=int, default=2, help="periodic volumes per side")
    p.add_argument("--reference-side", type=int, default=192)
    p.add_argument("--reference-samples", type=int, default=1)
    p.add_argument("--phase", help="phase name (default: the most abundant phase)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        run(
            args.checkpoint,
            args.out,
            args.sides,
            args.samples,
            args.reference_side,
            args.reference_samples,
            args.phase,
            args.seed,
        )
    except PorejaxError as exc:
        print(f"periodic_boundaries: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
