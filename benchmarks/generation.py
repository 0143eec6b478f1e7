"""Generation scaling (paper Fig. S7): wall time and peak memory vs voxels, porejax vs PyTorch.

The paper's generator (widths 512..64, 3 phases, freshly initialised: speed does not depend on the
weights) on latents of side a = 1, 5, ..., 29 (volumes of side 16 (a + 3) = 64 ... 512). porejax uses
`FrozenGenerator.slabs`: labels and confidence map, default tiling (one piece up to 384^3, tiles of 256
above; every layer computes only what its tile needs); PyTorch runs the reference generator one-shot in eval mode
(probabilities, argmax, max)
while it fits in memory. Every point is its own process (clean peak RSS); the first call (with
compilation) and the steady time of a second call are reported, porejax and PyTorch alternating per
size. Linear fits (steady time vs voxels) give the throughput in voxels per second and R².
Also the required end-to-end figure: `porejax generate --size 512` (chunked, streamed to TIFF) from a
paper-preset checkpoint written by `porejax init`: wall time and peak RSS of that process.

    python -m benchmarks.generation [--latents 1 5 9 ...] [--torch-max-side 384] [--plot benchmarks/generation.png]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N_PHASES = 3
LATENTS = (1, 5, 9, 13, 17, 21, 25, 29)


def side(latent: int) -> int:
    return 16 * (latent + 3)


def _porejax_worker(latent: int) -> dict:
    import jax

    from porejax import presets
    from porejax.generate import FrozenGenerator
    from porejax.models import init_variables
    from porejax.volume import PhaseMap

    config = presets.model("paper", N_PHASES)
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    gen = FrozenGenerator(config, PhaseMap(tuple(range(N_PHASES))), g_vars)
    z = gen.latent(0, latent)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        for _labels, _confidence in gen.slabs(z):
            pass
        times.append(time.perf_counter() - start)
    return {"first_s": times[0], "steady_s": times[1]}


def _torch_worker(latent: int) -> dict:
    import torch

    from benchmarks.torch_reference import Generator, init_weights

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = Generator(N_PHASES).eval()
    net.apply(init_weights)
    z = torch.randn(1, 100, latent, latent, latent)
    times = []
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            p = net(z)
            labels, confidence = p.argmax(1).to(torch.uint8), p.max(1).values
            del p, labels, confidence
            times.append(time.perf_counter() - start)
    return {"first_s": times[0], "steady_s": times[1]}


def _run(args: list[str]) -> dict:
    """Run a worker process and return its JSON result."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fit(voxels: list[float], seconds: list[float]) -> dict:
    """Least-squares line seconds = a + voxels / rate; rate in voxels per second, R²."""
    v, t = np.asarray(voxels, float), np.asarray(seconds, float)
    slope, intercept = np.polyfit(v, t, 1)
    r2 = 1 - np.sum((t - (slope * v + intercept)) ** 2) / np.sum((t - t.mean()) ** 2)
    return {
        "voxels_per_s": round(1 / slope),
        "seconds_per_million_voxels": round(slope * 1e6, 4),
        "intercept_s": round(float(intercept), 3),
        "r2": round(float(r2), 5),
        "points": len(v),
    }


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def _torch_estimate_mb(latent: int) -> float:
    """Rough peak of the one-shot PyTorch generator: its two largest activations plus the output (float32)."""
    s = side(latent)
    return 4 * (2 * (s // 2) ** 3 * 64 + 3 * s**3) / 2**20 + 600


def cli_512(workdir: Path) -> dict:
    """`porejax generate --size 512` from a paper-preset checkpoint: wall time and peak RSS of that process."""
    porejax = [sys.executable, "-m", "porejax.cli"]
    ckpt = workdir / "paper-init"
    subprocess.run(
        porejax + ["init", "--workdir", str(ckpt), "--preset", "paper", "--labels", "0,128,255"],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    out = workdir / "generated_512.tif"
    start = time.perf_counter()
    proc = subprocess.Popen(
        porejax + ["generate", "--checkpoint", str(ckpt), "--size", "512", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise RuntimeError(f"porejax generate failed: {proc.stderr.read().strip()}")
    return {
        "command": "porejax generate --checkpoint <paper init> --size 512 --out x.tif",
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "file_mb": round(out.stat().st_size / 2**20),
        "output": proc.stdout.read().strip().replace(f"{workdir}{os.sep}", ""),
    }


def plot(result: dict, path: Path) -> None:
    from porejax import figures

    fig = figures.new_figure(10, 4)
    ax_t, ax_m = fig.subplots(1, 2)
    for name, marker in (("porejax", "o"), ("torch", "s")):
        points = result["points"][name]
        if not points:
            continue
        v = np.asarray([p["voxels"] for p in points]) / 1e6
        t = np.asarray([p["steady_s"] for p in points])
        label = "PyTorch" if name == "torch" else "porejax"
        ax_t.plot(v, t, marker, label=label)
        fit = result["fits"].get(name)
        if fit:
            xs = np.linspace(0, v.max(), 50)
            ax_t.plot(
                xs,
                fit["intercept_s"] + fit["seconds_per_million_voxels"] * xs,
                "-",
                alpha=0.6,
                label=f"{label}: {fit['voxels_per_s'] / 1e6:.2f} Mvox/s, R² {fit['r2']:.4f}",
            )
        ax_m.plot(v, [p["peak_rss_mb"] / 1024 for p in points], marker + "-", label=label)
    ax_t.set_xlabel("voxels (millions)")
    ax_t.set_ylabel("generation time (s)")
    ax_t.legend(fontsize=8)
    ax_m.set_xlabel("voxels (millions)")
    ax_m.set_ylabel("peak RSS (GB)")
    ax_m.legend(fontsize=8)
    fig.suptitle("Generation scaling, paper generator, 2 CPU threads (sides 64 ... 512)")
    figures.save_png(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, nargs="+", default=list(LATENTS))
    parser.add_argument(
        "--torch-max-side",
        type=int,
        default=384,
        help="largest side PyTorch runs one-shot (memory; also skipped when it would not fit)",
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "generation.png")
    parser.add_argument("--skip-cli", action="store_true", help="skip the 512^3 `porejax generate` run")
    parser.add_argument("--worker", choices=("porejax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = _porejax_worker(args.latents[0]) if args.worker == "porejax" else _torch_worker(args.latents[0])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    result = {
        "benchmark": "generation",
        "load_average_start": os.getloadavg(),
        "points": {"porejax": [], "torch": []},
        "fits": {},
    }
    for latent in args.latents:
        for name in ("porejax", "torch"):
            if name == "torch" and (
                side(latent) > args.torch_max_side or _torch_estimate_mb(latent) > 0.8 * _available_mb()
            ):
                continue
            out = _run([sys.executable, "-m", "benchmarks.generation", "--worker", name, "--latents", str(latent)])
            point = {
                "latent": latent,
                "side": side(latent),
                "voxels": side(latent) ** 3,
                "first_s": round(out["first_s"], 3),
                "steady_s": round(out["steady_s"], 3),
                "peak_rss_mb": round(out["peak_rss_mb"]),
            }
            result["points"][name].append(point)
            print(json.dumps({name: point}), file=sys.stderr, flush=True)
    for name, points in result["points"].items():
        if len(points) >= 3:
            result["fits"][name] = _fit([p["voxels"] for p in points], [p["steady_s"] for p in points])
    shared = [p["side"] for p in result["points"]["torch"]]
    ratios = [
        t["steady_s"] / p["steady_s"]
        for p in result["points"]["porejax"]
        for t in result["points"]["torch"]
        if p["side"] == t["side"]
    ]
    if ratios:
        result["speedup_vs_torch"] = {
            "sides": shared,
            "per_side": [round(r, 3) for r in ratios],
            "median": round(float(np.median(ratios)), 3),
        }
    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            result["cli_512"] = cli_512(Path(tmp))
            print(json.dumps({"cli_512": result["cli_512"]}), file=sys.stderr, flush=True)
    result["load_average_end"] = os.getloadavg()
    if args.plot:
        plot(result, args.plot)
        result["plot"] = str(args.plot.relative_to(ROOT)) if args.plot.is_relative_to(ROOT) else str(args.plot)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
