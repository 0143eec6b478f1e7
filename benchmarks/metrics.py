"""Benchmark of porejax.metrics (and TauFactor / PoreSpy when importable); prints JSON.

    python benchmarks/metrics.py [--data ../shared/data/cathode_nmc_256.tif] [--sizes 64,128,256]
                                 [--tortuosity-sizes 64,128] [--preconditioners multigrid,jacobi]
                                 [--batch 100] [--repeat 1]

Crops [0:n, 0:n, 0:n] of the cathode volume. Every porejax time is per call after compilation (the first
call, compilation included, is reported separately as `first_call_s`), wall (`s`) and process CPU time
(`cpu_s`, all threads). Tortuosity is timed for each preconditioner in turn on every phase and axis, so
the two are compared back to back under the same machine load (`load_average` is reported).
`--batch B` times `characterise` on B random crops of 64^3 (all metrics, 3 phases x 3 axes of
tortuosity) as one batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import tifffile

from porejax.metrics import (
    characterise,
    specific_surface_area,
    tortuosity,
    triple_phase_boundary_density,
    two_point_correlation,
)

REPO = Path(__file__).resolve().parents[1]
VOXEL_UM = 100 / 256


def _timed(fn, repeat: int) -> dict:
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "first_call_s": round(first, 4),
        "s": round(min(times), 4),
        "cpu_s": round(min(cpu_times), 4),
        "result": result,
    }


def _porejax(volume: np.ndarray, solve: bool, preconditioners: list[str], repeat: int) -> dict:
    out = {
        "ssa": _timed(lambda: specific_surface_area(volume, VOXEL_UM), repeat),
        "tpb": _timed(lambda: triple_phase_boundary_density(volume, VOXEL_UM), repeat),
    }
    for record in out.values():
        record.pop("result")
    for label in np.unique(volume).tolist():
        mask = volume == label
        s2 = _timed(lambda: two_point_correlation(mask), repeat)
        s2.pop("result")
        out[f"tpcf_radial_{label}"] = s2
    if not solve:
        return out
    solves = {name: {} for name in preconditioners}
    for label in np.unique(volume).tolist():
        mask = volume == label
        for axis in range(3):
            for name in preconditioners:
                run = _timed(lambda: tortuosity(mask, axis=axis, preconditioner=name), repeat)
                result = run.pop("result")
                run.update(tau=float(result.tau), iterations=int(result.iterations), converged=bool(result.converged))
                solves[name][f"{label}_{'xyz'[axis]}"] = run
    for name, runs in solves.items():
        out[f"tortuosity_{name}"] = {
            "all_9_s": round(sum(r["s"] for r in runs.values()), 3),
            "all_9_cpu_s": round(sum(r["cpu_s"] for r in runs.values()), 3),
            "iterations": [min(r["iterations"] for r in runs.values()), max(r["iterations"] for r in runs.values())],
            "solves": runs,
        }
    return out


def _peers(volume: np.ndarray, solve: bool) -> dict:
    out = {}
    try:
        import porespy

        porespy.metrics.two_point_correlation(volume == 0)  # numba compile
        start = time.perf_counter()
        for label in np.unique(volume):
            porespy.metrics.two_point_correlation(volume == label)
        out["porespy_tpcf_all_phases_s"] = round(time.perf_counter() - start, 4)
    except ImportError:
        out["porespy"] = "not installed"
    if solve:
        try:
            import taufactor

            start = time.perf_counter()
            for label in np.unique(volume):
                for axis in range(3):
                    solver = taufactor.Solver(np.moveaxis(volume == label, axis, 0).astype(np.float32), device="cpu")
                    solver.solve(verbose=False)
            out["taufactor_all_9_s"] = round(time.perf_counter() - start, 3)
        except ImportError:
            out["taufactor"] = "not installed"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cathode_nmc_256.tif"))
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--tortuosity-sizes", default="64,128,256")
    parser.add_argument(
        "--preconditioners",
        default="multigrid,jacobi",
        help="tortuosity preconditioners to time, interleaved per solve",
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--peers", action="store_true", help="also time TauFactor / PoreSpy if importable")
    args = parser.parse_args()
    volume = tifffile.imread(args.data)
    solve_sizes = {int(s) for s in args.tortuosity_sizes.split(",") if s}
    report = {"data": args.data, "load_average_start": os.getloadavg(), "sizes": {}}
    preconditioners = [p for p in args.preconditioners.split(",") if p]
    for size in (int(s) for s in args.sizes.split(",")):
        crop = np.ascontiguousarray(volume[:size, :size, :size])
        report["sizes"][size] = _porejax(crop, size in solve_sizes, preconditioners, args.repeat)
        if args.peers:
            report["sizes"][size]["peers"] = _peers(crop, size in solve_sizes)
        print(json.dumps({size: report["sizes"][size]}), flush=True)
    if args.batch:
        rng = np.random.default_rng(0)
        corners = rng.integers(0, volume.shape[0] - 64, (args.batch, 3))
        batch = np.stack([volume[a : a + 64, b : b + 64, c : c + 64] for a, b, c in corners])
        start, cpu_start = time.perf_counter(), time.process_time()
        characterise(batch, VOXEL_UM)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        report["characterise_batch"] = {
            "volumes": args.batch,
            "shape": [64, 64, 64],
            "total_s": round(total, 2),
            "cpu_s": round(cpu, 2),
            "per_volume_s": round(total / args.batch, 3),
            "note": "first call: compilation included",
        }
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
