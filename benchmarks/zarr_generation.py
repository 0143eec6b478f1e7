"""Generation into a Zarr store: one job against --part jobs, and the 256^3 rate for comparison.

Runs `porejax generate --checkpoint CHECKPOINT --size N --periodic xyz --out v.zarr` as separate processes
(wall time and peak RSS of each from os.wait4), one after the other: N = 256 once, N = 1024 as one job,
as 2 and as 4 `--part` jobs (sum of their times, max of their peak RSS); checks that the stores of the
part runs hold the same bytes as the one-job store (compared slab by slab, 64 x-layers at a time).

    python -m benchmarks.zarr_generation [--checkpoint experiments/results/cathode/checkpoint] [--size 1024]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _job(args: list[str]) -> dict:
    """Run one `porejax` command; its wall time, peak RSS and the generation seconds it printed."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "porejax.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"porejax {' '.join(args)} failed:\n{out}")
    printed = re.findall(r", ([0-9.]+) s$", out.strip(), re.MULTILINE)
    return {"wall_s": round(wall, 2), "generate_s": float(printed[-1]), "peak_rss_mb": usage.ru_maxrss // 1024}


def _same(a: Path, b: Path) -> bool:
    from porejax.store import StoreVolume

    va, vb = StoreVolume(a), StoreVolume(b)
    return va.shape == vb.shape and all(
        np.array_equal(va[x : x + 64], vb[x : x + 64]) for x in range(0, va.shape[0], 64)
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "experiments/results/cathode/checkpoint"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--small", type=int, default=256)
    parser.add_argument("--parts", type=int, nargs="*", default=[2, 4])
    args = parser.parse_args(argv)
    result = {
        "benchmark": "zarr_generation",
        "checkpoint": os.path.relpath(args.checkpoint, ROOT),
        "load_average_start": os.getloadavg(),
    }
    tmp = Path(tempfile.mkdtemp(prefix="zarr-bench-"))
    base = ["generate", "--checkpoint", args.checkpoint, "--periodic", "xyz", "--seed", "0"]
    try:
        small = _job(base + ["--size", str(args.small), "--out", str(tmp / "small.zarr")])
        result["small"] = {"size": args.small, **small}
        print(json.dumps(result["small"]), file=sys.stderr, flush=True)
        one = _job(base + ["--size", str(args.size), "--out", str(tmp / "one.zarr")])
        result["one_job"] = {"size": args.size, **one}
        print(json.dumps(result["one_job"]), file=sys.stderr, flush=True)
        result["parts"] = []
        for n in args.parts:
            out = tmp / f"parts{n}.zarr"
            jobs = [
                _job(base + ["--size", str(args.size), "--out", str(out), "--part", f"{i}/{n}"])
                for i in range(1, n + 1)
            ]
            record = {
                "parts": n,
                "jobs": jobs,
                "sum_wall_s": round(sum(j["wall_s"] for j in jobs), 2),
                "sum_generate_s": round(sum(j["generate_s"] for j in jobs), 2),
                "max_peak_rss_mb": max(j["peak_rss_mb"] for j in jobs),
                "identical_bytes": _same(tmp / "one.zarr", out),
            }
            result["parts"].append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def rate(r):  # seconds per 10^9 voxels
        return r["generate_s"] / r["size"] ** 3 * 1e9

    result["s_per_gvoxel"] = {"small": round(rate(result["small"]), 2), "one_job": round(rate(result["one_job"]), 2)}
    result["load_average_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
