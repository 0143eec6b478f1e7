"""The fidelity targets of a `porejax compare` report, met or not: one Markdown table for several reports.

    python -m experiments.targets REPORT_DIR [REPORT_DIR ...] [--names A,B,...]

Reads each report's metrics.json (its table of means, and the per-volume samples for tau) and prints, per report,
the numbers the targets are stated in:

- volume fraction |mean gen - mean real| per phase (target <= 0.02);
- specific surface area, relative difference of the means per phase (<= 5% for 3D training, <= 10% from
  2D images);
- TPB density, relative difference of the means (<= 10%);
- D_rel (mean over axes), |mean gen - mean real| for each phase (<= 0.02 for pore and the first solid);
- tortuosity per axis and phase: tau = phase fraction / D_rel of every volume (DESIGN: D_rel = phi / tau),
  relative difference of the medians (<= 15% from 2D images; the median, since a volume without a spanning
  path has tau = inf);
- the smallest std ratio (gen / real) over every metric and phase (>= 0.7);
- two-point correlation: the smallest fraction of lags inside the real band over phases and axes (>= 95%);
- memorisation: the generated median nearest agreement against the real baseline's;
- position (non-periodic reports): how many bands of distance from the nearest face deviate from the
  set's overall fractions (the report's rule; target 0);
- seams (periodic reports): the seam / interior mismatch ratio per axis (1.00 +- 0.05).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _means(report: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(real, generated) means of `metric` per phase (one entry for TPB), from the report's own table."""
    rows = [row for row in report["table"] if row["metric"] == metric]
    return tuple(np.array([row[which]["mean"] for row in rows]) for which in ("real", "generated"))


def _samples(report: dict, which: str) -> dict[str, np.ndarray]:
    """Per-volume phase fractions (N, phases) and D_rel (N, phases, axes) of the real or generated set."""
    samples = report["samples"][which]
    return {m: np.asarray(samples[m], dtype=float) for m in ("volume_fraction", "relative_diffusivity_xyz")}


def _median_tau(samples: dict[str, np.ndarray]) -> np.ndarray:
    """Median over volumes of tau = phi / D_rel, (phases, axes); inf where most volumes have no path."""
    phi = samples["volume_fraction"][:, :, None]
    drel = samples["relative_diffusivity_xyz"]
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(drel > 0, phi / drel, np.inf)
    return np.median(tau, axis=0)


def _percent(gen: float, real: float) -> str:
    return f"{100 * (gen / real - 1):+.1f}%"


def rows(report: dict) -> list[tuple[str, str]]:
    """(target, value) rows of one report's metrics.json."""
    names = [p["name"] for p in report["phases"]]
    vf_r, vf_g = _means(report, "volume_fraction")
    ssa_r, ssa_g = _means(report, "specific_surface_area")
    (tpb_r,), (tpb_g,) = _means(report, "tpb_density")
    d_r, d_g = _means(report, "relative_diffusivity")
    real, gen = _samples(report, "real"), _samples(report, "generated")
    tau_r, tau_g = _median_tau(real), _median_tau(gen)
    out = [
        ("vf gen - real", " / ".join(f"{n} {g - r:+.3f}" for n, g, r in zip(names, vf_g, vf_r))),
        ("SSA gen vs real", " / ".join(f"{n} {_percent(g, r)}" for n, g, r in zip(names, ssa_g, ssa_r))),
        ("TPB gen vs real", _percent(float(tpb_g), float(tpb_r))),
        ("D_rel (mean of axes) gen - real", " / ".join(f"{n} {g - r:+.3f}" for n, g, r in zip(names, d_g, d_r))),
    ]
    for p, name in enumerate(names):
        cells = [
            f"{axis} {tg:.2f} vs {tr:.2f} ({_percent(tg, tr) if np.isfinite(tg * tr) else 'inf'})"
            for axis, tg, tr in zip("xyz", tau_g[p], tau_r[p])
        ]
        out.append((f"tau {name} (median) gen vs real", "; ".join(cells)))
    ratios = [row["std_ratio"] for row in report["table"]]
    out.append(("std ratio gen / real, min (max)", f"{min(ratios):.2f} ({max(ratios):.2f})"))
    band = report["two_point_correlation"]["band"]
    worst = min(band, key=lambda b: b["fraction_inside"])
    inside = {n: min(b["fraction_inside"] for b in band if b["phase"] == n) for n in names}
    out.append(
        (
            "S2 lags inside the real band, min per phase",
            " / ".join(f"{n} {100 * v:.0f}%" for n, v in inside.items())
            + f" (worst: {worst['phase']} {worst['axis']})",
        )
    )
    mem = report["memorisation"]
    out.append(
        (
            "memorisation: median nearest agreement gen vs real baseline",
            f"{mem['generated']['median']:.3f} vs {mem['baseline']['median']:.3f} ({mem['verdict']})",
        )
    )
    if report.get("face_bands"):
        bands = report["face_bands"]
        out.append(("position: face bands deviating from the interior", f"{bands['deviating_bands']}"))
    if report.get("seams"):
        out.append(("seam ratio x / y / z", " / ".join(f"{report['seams'][a]['ratio']:.3f}" for a in "xyz")))
    return out


def table(paths: list[Path], names: list[str]) -> str:
    reports = [json.loads((p / "metrics.json").read_text()) for p in paths]
    per = [dict(rows(r)) for r in reports]
    keys = list(dict.fromkeys(k for rs in per for k in rs))
    lines = ["| target | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {k} | " + " | ".join(rs.get(k, "-") for rs in per) + " |" for k in keys]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", type=Path, nargs="+", help="porejax compare output folders")
    p.add_argument("--names", help="column names, comma-separated (default: the folders' names)")
    args = p.parse_args(argv)
    names = args.names.split(",") if args.names else [r.name for r in args.reports]
    if len(names) != len(args.reports):
        p.error(f"--names gives {len(names)} names for {len(args.reports)} reports")
    missing = [str(r) for r in args.reports if not (r / "metrics.json").is_file()]
    if missing:
        p.error(f"no metrics.json in {', '.join(missing)}: give porejax compare output folders")
    print(table(args.reports, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
