"""The largest single-phase diffusion solves on this machine: time, iterations and peak memory per voxel.

Each size N runs in its own process: an N^3 volume made by mirror-tiling the 256^3 cathode (reflections
keep every path connected across the seams, so the structure stays a valid electrode), and one solve of
the pore phase along x (`porejax.metrics.tortuosity`, multigrid, float32, mirror sides, rtol 1e-3, one
device). Reported per size: the solve's wall time (first call, so compilation included) and a second
call's, CG iterations, tau, the device memory XLA's compiled CG loop declares (`memory_analysis`:
arguments + temporaries, per voxel), and the process's peak RSS (os.wait4), from which a user sizes a
larger solve: bytes per voxel times voxels, divided over N devices as RESULTS.md explains.

    python -m benchmarks.large_solve [--data ../shared/data/cathode_nmc_256.tif] [--sides 256 384 512]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def mirror_tiled(volume: np.ndarray, side: int) -> np.ndarray:
    """(side,)^3 from a cubic volume tiled with reflections along each axis (no seams in any path)."""
    n = volume.shape[0]
    reps = -(-side // n)
    for axis in range(3):
        parts = [np.flip(volume, axis) if k % 2 else volume for k in range(reps)]
        volume = np.concatenate(parts, axis=axis)
    return np.ascontiguousarray(volume[:side, :side, :side])


def compiled_bytes(mask: np.ndarray) -> dict:
    """Device bytes of the compiled CG loop for this field (arguments, temporaries), from XLA."""
    import jax
    import jax.numpy as jnp

    from porejax.metrics.conjugate_gradient import _solve_prepared_batch, _prepare_batch
    from porejax.metrics.multigrid import SMOOTHING_SWEEPS

    field = jnp.asarray(mask[None].astype(np.float32))
    prepared = jax.eval_shape(lambda f: _prepare_batch(f, periodic_sides=False, preconditioner="multigrid"), field)
    lowered = _solve_prepared_batch.lower(
        prepared,
        jnp.asarray(1e-3, jnp.float32),
        jnp.asarray(SMOOTHING_SWEEPS, jnp.int32),
        periodic_sides=False,
        max_iter=20000,
        return_field=False,
        preconditioner="multigrid",
    )
    analysis = lowered.compile().memory_analysis()
    return {"arguments": int(analysis.argument_size_in_bytes), "temporaries": int(analysis.temp_size_in_bytes)}


def worker(data: str, side: int) -> dict:
    import tifffile

    from porejax.metrics import tortuosity

    labels = tifffile.imread(data)
    pore = mirror_tiled(labels, side) == np.unique(labels)[0]
    voxels = pore.size
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        result = tortuosity(pore, axis=0)
        calls.append(time.perf_counter() - start)
    memory = compiled_bytes(pore)
    return {
        "side": side,
        "phase_fraction": float(pore.mean()),
        "tau": float(result.tau),
        "iterations": int(result.iterations),
        "converged": bool(result.converged),
        "first_call_s": round(calls[0], 2),
        "second_call_s": round(calls[1], 2),
        "compiled_loop_bytes_per_voxel": {k: round(v / voxels, 1) for k, v in memory.items()},
    }


def run(data: str, side: int) -> dict:
    """One size in its own process; adds its wall time and peak RSS."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "benchmarks.large_solve", "--worker", str(side), "--data", data]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if status != 0:
        return {"side": side, "error": err.strip().splitlines()[-1] if err.strip() else f"exit status {status}"}
    result = json.loads(out.strip().splitlines()[-1])
    peak = usage.ru_maxrss * 1024
    result.update(
        wall_s=round(time.perf_counter() - start, 2),
        peak_rss_mb=round(peak / 2**20),
        peak_rss_bytes_per_voxel=round(peak / side**3, 1),
    )
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cathode_nmc_256.tif"))
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.data, args.worker)))
        return
    rows = []
    for side in args.sides:
        rows.append(run(args.data, side))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"load_average": os.getloadavg(), "solves": rows}, indent=1))


if __name__ == "__main__":
    main()
