"""What a user runs, side by side with the PyTorch reference (benchmarks/torch_reference.py) in one run.

train: `porejax train --preset paper --batch-size B` as its own process (data loading, the loop, logging
every step, on-device crop sampling, the default periodic 4^3 latents; `--latent point`, the paper's
1^3 latents; and `--precision bfloat16`, the opt-in mixed precision), seconds per iteration from its
log.jsonl: the differences of consecutive "time" entries after the compiling step. The process is
stopped after `--steps` logged iterations, before any evaluation or checkpoint. Beside it the PyTorch
reference's loop (crops sampled, one iteration) in its own process, and the isolated jitted step
(`benchmarks.train_step`). Rounds interleave all of them.

generate: `porejax generate --checkpoint <paper init> --size S --out x.tif` (process wall time, and the
time it prints for generating and writing) twice per round with a new, empty compilation cache: a first
run (compiling) and the same command again (its programs loaded from the cache), the Python API in a
fresh process (`load_generator`, then `generate(latent, size=S)`: first call with compilation, then a
second call), and the PyTorch reference generator one-shot in eval mode (probabilities, argmax, max), all
on the latent of side S / 16 - 3 (the paper's zero-padded generation, what a `porejax init` checkpoint or
a 1^3-trained one gives). Also the Python API for a generator trained on periodic latents (the default of
`porejax train`: non-periodic volumes from the latent's interior, `--size` picks the latent). Sides 144,
256 and 512 (512: tiles of 256, PyTorch only when it fits in the free memory).

    python -m benchmarks.user_path [--sections train generate] [--rounds 2] [--steps 4] [--sides 144 256 512]

Prints one JSON document; RESULTS.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import train_step
from benchmarks.generation import _available_mb, _run, _torch_estimate_mb
from benchmarks.training_setup import N_PHASES, VOLUME_SIDE

ROOT = Path(__file__).resolve().parents[1]
POREJAX = [sys.executable, "-m", "porejax.cli"]
LATENTS = ("periodic", "point")
# `porejax train` variants timed: the default, the paper's 1^3 latents, and the opt-in mixed precision
CLI_VARIANTS = {
    "periodic": ("periodic", "float32"),
    "point": ("point", "float32"),
    "bfloat16": ("periodic", "bfloat16"),
}


def _env(cache: Path | None = None) -> dict:
    """The environment of a measured process: one device, default flags, and the compilation cache in
    `cache` (None: off, so that every run compiles as a first run does)."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["POREJAX_COMPILATION_CACHE"] = str(cache) if cache is not None else "off"
    return env


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 3)


def train_cli(data: Path, workdir: Path, variant: str, batch: int, steps: int) -> dict:
    """Iteration times (s) of `porejax train` from its log, the process stopped after `steps` + 1 records.
    variant: a key of CLI_VARIANTS."""
    log = workdir / "log.jsonl"
    latent, precision = CLI_VARIANTS[variant]
    args = ["train", "--data", str(data), "--workdir", str(workdir), "--preset", "paper"]
    args += ["--batch-size", str(batch), "--latent", latent, "--precision", precision]
    args += ["--steps", "100000", "--log-every", "1"]
    start = time.perf_counter()
    proc = subprocess.Popen(POREJAX + args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records: list[dict] = []
    while len(records) < steps + 1:
        if proc.poll() is not None:
            raise RuntimeError(f"porejax train exited with {proc.returncode}: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.2)
        if log.exists():
            records = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    proc.terminate()
    proc.wait()
    times = [b["time"] - a["time"] for a, b in zip(records, records[1:])][:steps]
    return {
        "times_s": [round(t, 3) for t in times],
        "first_record_s": records[0]["time"],
        "wall_s": time.perf_counter() - start,
    }


def torch_loop(batch: int, steps: int) -> list[float]:
    """The PyTorch reference's loop (`benchmarks.train_step`'s worker): one warm-up iteration, then `steps`."""
    proc = train_step._start("torch", batch)
    train_step._ask(proc, None)
    times = [train_step._ask(proc, "step")["seconds"] for _ in range(steps + 1)][1:]
    train_step._ask(proc, "exit")
    proc.wait()
    return [round(t, 3) for t in times]


def train_section(batch: int, rounds: int, steps: int) -> dict:
    """`porejax train` (periodic and point latents), the isolated step and the PyTorch loop, rounds interleaved."""
    out: dict = {"cli": {variant: [] for variant in CLI_VARIANTS}, "torch_loop": [], "step": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "volume.npy"
        np.save(data, np.random.default_rng(0).integers(0, N_PHASES, (VOLUME_SIDE,) * 3).astype(np.uint8))
        for r in range(rounds):
            for variant in CLI_VARIANTS:
                run = train_cli(data, Path(tmp) / f"{variant}_{r}", variant, batch, steps)
                out["cli"][variant] += run["times_s"]
                print(json.dumps({"round": r, "cli": variant, **run}), file=sys.stderr, flush=True)
            out["torch_loop"] += torch_loop(batch, steps)
            step = train_step.measure(batch, ["porejax-periodic", "porejax", "torch"], steps, 1)
            out["step"].append({v: step[v]["times_s"] for v in step})
            print(
                json.dumps({"round": r, "torch_loop": out["torch_loop"][-steps:], "step": out["step"][-1]}),
                file=sys.stderr,
                flush=True,
            )
    torch_s = _median(out["torch_loop"])
    step_times = {v: sum((s[v] for s in out["step"]), []) for v in out["step"][0]}
    step_torch = _median(step_times["torch"])
    summary = {
        "porejax train (default: periodic latents)": _median(out["cli"]["periodic"]),
        "porejax train --latent point": _median(out["cli"]["point"]),
        "porejax train --precision bfloat16 (opt-in)": _median(out["cli"]["bfloat16"]),
        "PyTorch reference loop": torch_s,
        "isolated step, periodic latents": _median(step_times["porejax-periodic"]),
        "isolated step, point latents": _median(step_times["porejax"]),
        "isolated step, PyTorch": step_torch,
    }
    ratios = {
        "train periodic vs PyTorch loop": round(torch_s / summary["porejax train (default: periodic latents)"], 3),
        "train point vs PyTorch loop": round(torch_s / summary["porejax train --latent point"], 3),
        "train bfloat16 (opt-in) vs PyTorch loop": round(
            torch_s / summary["porejax train --precision bfloat16 (opt-in)"], 3
        ),
        "train periodic / train point": round(
            summary["porejax train (default: periodic latents)"] / summary["porejax train --latent point"], 3
        ),
        "step periodic vs PyTorch step": round(step_torch / summary["isolated step, periodic latents"], 3),
        "step point vs PyTorch step": round(step_torch / summary["isolated step, point latents"], 3),
    }
    return {
        "batch": batch,
        "rounds": rounds,
        "steps_per_round": steps,
        "median_s": summary,
        "ratios": ratios,
        "raw": out,
    }


def generate_cli(checkpoint: Path, size: int, workdir: Path, cache: Path) -> dict:
    """`porejax generate --size` as its own process with its compilation cache in `cache`: wall time, and
    the seconds it prints."""
    out = workdir / f"g{size}.tif"
    start = time.perf_counter()
    proc = subprocess.run(
        POREJAX + ["generate", "--checkpoint", str(checkpoint), "--size", str(size), "--out", str(out)],
        cwd=ROOT,
        env=_env(cache),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"porejax generate failed: {proc.stderr.strip()[-500:]}")
    out.unlink()
    printed = float(re.findall(r"([0-9.]+) s$", proc.stdout.strip())[-1])
    return {"wall_s": round(wall, 2), "printed_s": printed}


def api_worker(checkpoint: str, size: int, latent: str) -> dict:
    """The Python API: load the checkpoint, generate (labels, confidence) at `size` twice."""
    import dataclasses

    from porejax.generate import load_generator

    start = time.perf_counter()
    gen = load_generator(checkpoint)
    gen = dataclasses.replace(gen, training_latent=latent)
    load_s = time.perf_counter() - start
    z = gen.latent(0, gen.latent_size_for(size))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        gen.generate(z, size=size)
        times.append(time.perf_counter() - start)
    return {"load_s": round(load_s, 2), "first_s": round(times[0], 2), "steady_s": round(times[1], 2)}


def generate_section(sides: list[int], rounds: int) -> dict:
    """Per side: CLI, Python API (init checkpoint; and as a periodic-trained generator) and PyTorch, interleaved."""
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "paper-init"
        subprocess.run(
            POREJAX + ["init", "--workdir", str(ckpt), "--preset", "paper", "--labels", "0,128,255"],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        for size in sides:
            runs: dict = {"cli": [], "cli_cached": [], "api": [], "api_periodic_trained": [], "torch": []}
            latent = size // 16 - 3
            fits = _torch_estimate_mb(latent) < 0.8 * _available_mb()
            for r in range(1 if size > 256 else rounds):
                cache = Path(tmp) / f"cache-{size}-{r}"  # empty: the first run compiles, the second loads
                runs["cli"].append(generate_cli(ckpt, size, Path(tmp), cache))
                runs["cli_cached"].append(generate_cli(ckpt, size, Path(tmp), cache))
                worker = [sys.executable, "-m", "benchmarks.user_path", "--worker", str(ckpt), "--sides", str(size)]
                runs["api"].append(_run(worker + ["--latent", "point"]))
                runs["api_periodic_trained"].append(_run(worker + ["--latent", "periodic"]))
                if fits:
                    torch = [
                        sys.executable,
                        "-m",
                        "benchmarks.generation",
                        "--worker",
                        "torch",
                        "--latents",
                        str(latent),
                    ]
                    runs["torch"].append(_run(torch))
                print(
                    json.dumps({"side": size, **{k: v[-1] for k, v in runs.items() if v}}), file=sys.stderr, flush=True
                )
            med = {
                "porejax generate (printed)": _median([r["printed_s"] for r in runs["cli"]]),
                "porejax generate (process wall)": _median([r["wall_s"] for r in runs["cli"]]),
                "porejax generate again (printed)": _median([r["printed_s"] for r in runs["cli_cached"]]),
                "porejax generate again (process wall)": _median([r["wall_s"] for r in runs["cli_cached"]]),
                "Python API first call": _median([r["first_s"] for r in runs["api"]]),
                "Python API second call": _median([r["steady_s"] for r in runs["api"]]),
                "Python API, periodic-trained, first call": _median(
                    [r["first_s"] for r in runs["api_periodic_trained"]]
                ),
                "Python API, periodic-trained, second call": _median(
                    [r["steady_s"] for r in runs["api_periodic_trained"]]
                ),
            }
            if runs["torch"]:
                med["PyTorch first call"] = _median([r["first_s"] for r in runs["torch"]])
                med["PyTorch second call"] = _median([r["steady_s"] for r in runs["torch"]])
                ratios = {
                    k + " vs PyTorch": round(
                        med["PyTorch first call" if "first" in k else "PyTorch second call"] / v, 3
                    )
                    for k, v in med.items()
                    if not k.startswith("PyTorch")
                }
                for k in ("porejax generate (printed)", "porejax generate again (printed)"):
                    ratios[k + " vs PyTorch first call"] = round(med["PyTorch first call"] / med[k], 3)
            else:
                ratios = {}
            out[str(size)] = {"median_s": med, "ratios": ratios, "raw": runs}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=("train", "generate"), default=["train", "generate"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed iterations per training run and round")
    parser.add_argument("--sides", type=int, nargs="+", default=[144, 256, 512])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--latent", choices=LATENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = api_worker(args.worker, args.sides[0], args.latent)
        print(json.dumps(result))
        return
    out: dict = {"benchmark": "user_path", "load_average_start": os.getloadavg()}
    if "train" in args.sections:
        out["train"] = train_section(args.batch, args.rounds, args.steps)
    if "generate" in args.sections:
        out["generate"] = generate_section(args.sides, args.rounds)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
