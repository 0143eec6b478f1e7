"""Device check: the paper's training iteration beside the PyTorch reference, large periodic generation and
a large tortuosity solve, on whatever device JAX and PyTorch find (meant for one GPU).

    python -m benchmarks.device_check --out DIR [--smoke] [--only train generate tortuosity]

Each part runs in its own process (clean device memory: JAX preallocates most of a GPU's; its own time limit) and
writes DIR/<part>.json;
DIR/device_check.json collects them with the devices and the library versions. `--smoke` runs every part
at tiny sizes on any machine (tiny preset at batch 2, 32^3 generation, a 32^3 solve) to check the script
itself. benchmarks/device_check.sh runs this after the test subset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("train_porejax", "train_torch", "generate", "tortuosity")
_TRAIN, _TRAIN_SMOKE = (
    {"preset": "paper", "batch": 32, "rounds": 5, "warmup": 2},
    {"preset": "tiny", "batch": 2, "rounds": 2, "warmup": 1},
)
FULL = {
    "train_porejax": _TRAIN,
    "train_torch": _TRAIN,
    "generate": {"preset": "paper", "latent": 32},
    "tortuosity": {"side": 256},
}
SMOKE = {
    "train_porejax": _TRAIN_SMOKE,
    "train_torch": _TRAIN_SMOKE,
    "generate": {"preset": "tiny", "latent": 4},
    "tortuosity": {"side": 32},
}
# seconds per part (its own process: JAX and PyTorch never share the device memory); with the test subset's
# 120 s the whole check stays under 8 minutes
TIME_LIMIT_S = {"train_porejax": 100, "train_torch": 55, "generate": 85, "tortuosity": 55}
SMOKE_TIME_FACTOR = 10  # a loaded CPU took 6 min to compile the tiny training step


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _timed(run, rounds: int, warmup: int) -> dict:
    times = []
    for r in range(warmup + rounds):
        start = time.perf_counter()
        run()
        if r >= warmup:
            times.append(round(time.perf_counter() - start, 4))
    return {"times_s": times, "median_s": _median(times)}


def part_train_porejax(preset: str, batch: int, rounds: int, warmup: int) -> dict:
    """Seconds per iteration of porejax.train's jitted step (one D update, k = 2 G updates) with the
    paper's 1^3 training latents (the reference's computation), in the backend's default formulation."""
    import jax

    from benchmarks.training_setup import paper_training
    from porejax import train
    from porejax.nn.layers import conv_formulation

    model_config, config, spec, mesh, state, arrays = paper_training(batch, preset_name=preset)
    start = time.perf_counter()
    step = train.make_step(model_config, config, spec, mesh).lower(state, arrays).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = step(holder["state"], arrays)
        jax.block_until_ready(metrics)

    return {
        "preset": preset,
        "batch": batch,
        "formulation": conv_formulation(),
        "compile_s": round(compile_s, 2),
        **_timed(run, rounds, warmup),
    }


def part_train_torch(preset: str, batch: int, rounds: int, warmup: int) -> dict:
    """Seconds per iteration of benchmarks/torch_reference.py on the GPU (else CPU), crops sampled there."""
    import torch

    from benchmarks.torch_reference import TrainStep
    from benchmarks.training_setup import N_PHASES, VOLUME_SIDE
    from porejax.presets import model as model_preset

    config = model_preset(preset, N_PHASES)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = TrainStep(N_PHASES, config.latent_channels, config.g_widths, config.d_widths, device=device)
    crop = config.crop_size
    volume = torch.randint(0, N_PHASES, (VOLUME_SIDE,) * 3, generator=torch.Generator().manual_seed(0)).to(device)

    def run() -> None:
        origins = torch.randint(0, VOLUME_SIDE - crop + 1, (batch, 3)).tolist()
        crops = torch.stack([volume[a : a + crop, b : b + crop, c : c + crop] for a, b, c in origins])
        model(torch.nn.functional.one_hot(crops.long(), N_PHASES).permute(0, 4, 1, 2, 3).float())
        if device == "cuda":
            torch.cuda.synchronize()

    return {
        "preset": preset,
        "batch": batch,
        "device": device,
        "torch": torch.__version__,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        **_timed(run, rounds, warmup),
    }


def part_generate(preset: str, latent: int) -> dict:
    """A periodic volume of side 16 * latent (paper network) from freshly initialised weights, streamed to TIFF."""
    import jax

    from porejax.generate import FrozenGenerator
    from porejax.models import init_variables
    from porejax.presets import model as model_preset
    from porejax.volume import PhaseMap

    config = model_preset(preset, 3)
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    gen = FrozenGenerator(config, PhaseMap((0, 1, 2)), g_vars, training_latent="periodic")
    z = gen.latent(0, latent)
    with tempfile.TemporaryDirectory() as folder:
        times = []
        for _ in range(2):  # the first includes compilation
            start = time.perf_counter()
            shape = gen.write(Path(folder) / "g.tif", z, "xyz")
            times.append(round(time.perf_counter() - start, 2))
    return {
        "preset": preset,
        "latent": latent,
        "shape": list(shape),
        "periodic": "xyz",
        "first_s": times[0],
        "second_s": times[1],
    }


def part_tortuosity(side: int) -> dict:
    """Tortuosity along x of the pore phase of a synthetic cathode of side^3 voxels (first call compiles)."""
    from porejax import synthetic
    from porejax.metrics import tortuosity

    mask = synthetic.cathode(side, seed=0) == 0
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        result = tortuosity(mask, axis=0)
        runs.append(
            {
                "seconds": round(time.perf_counter() - start, 2),
                "tau": float(result.tau),
                "iterations": int(result.iterations),
                "converged": bool(result.converged),
            }
        )
    return {"side": side, "phase": "pore", "axis": "x", "first": runs[0], "second": runs[1]}


def _run_part(name: str, smoke: bool, out: Path) -> dict:
    """Run one part in a child process under its time limit; its JSON, or why there is none."""
    cmd = [sys.executable, "-m", "benchmarks.device_check", "--part", name, "--out", str(out)]
    limit = TIME_LIMIT_S[name] * (SMOKE_TIME_FACTOR if smoke else 1)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd + (["--smoke"] if smoke else []),
            capture_output=True,
            text=True,
            timeout=limit,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired:
        return {"error": f"over its {limit} s limit"}
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        return {"error": f"exit status {proc.returncode}", "log_tail": (proc.stdout + proc.stderr)[-2000:]}
    return {**json.loads((out / f"{name}.json").read_text()), "wall_s": round(time.perf_counter() - start, 1)}


def _environment() -> dict:
    import jax

    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "conv_formulation_env": os.environ.get("POREJAX_CONV"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON results")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script on any machine")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # child process: one part
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = SMOKE if args.smoke else FULL
    if args.part:
        run = {
            "train_porejax": part_train_porejax,
            "train_torch": part_train_torch,
            "generate": part_generate,
            "tortuosity": part_tortuosity,
        }[args.part]
        (args.out / f"{args.part}.json").write_text(json.dumps(run(**sizes[args.part]), indent=1))
        return
    result = {"benchmark": "device_check", "smoke": args.smoke, **_environment(), "parts": {}}
    for name in args.only:
        result["parts"][name] = _run_part(name, args.smoke, args.out)
        print(json.dumps({name: result["parts"][name]}), file=sys.stderr, flush=True)
    porejax_s, torch_s = (result["parts"].get(k, {}).get("median_s") for k in ("train_porejax", "train_torch"))
    if porejax_s and torch_s:
        result["train_speedup_vs_torch"] = round(torch_s / porejax_s, 3)
    (args.out / "device_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if any("error" in part for part in result["parts"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
