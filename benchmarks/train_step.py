"""Training throughput: seconds per full iteration (one D update + k = 2 G updates), porejax vs PyTorch.

The paper's networks (widths 512..64 / 16..128, 64^3 crops, 3 phases) and recipe (BCE, real label 0.9,
Adam 2e-5 / 0.5 / 0.999, k = 2) at batch sizes 1, 4, 8. Each variant runs in its own worker process
(clean peak RSS, same 2 CPU threads) and the parent runs their iterations interleaved, A B A B ..., so
that other load on the machine hits every variant alike; the median of the timed iterations after the
warm-up is reported, compile time separately. Crops are sampled from a random label volume inside the
timed iteration in both frameworks (porejax: inside its jitted step, as in training).

Variants: `porejax` (porejax.train's step, float32, the paper's 1^3 training latents: the same computation
as the reference), `porejax-bf16` (the same with bfloat16 matrix products, float32 weights),
`porejax-periodic` (float32 with porejax's default periodic 4^3 training latents and circular padding in
every generator layer: more work than the paper's step), `torch` (benchmarks/torch_reference.py, float32).

    python -m benchmarks.train_step [--batch 1 4 8] [--rounds 5] [--variants porejax torch]

Prints one JSON document. The other training benchmarks: benchmarks/layer_times.py (layer by layer),
benchmarks/profile_step.py (per-op profile), benchmarks/precision.py (bfloat16 against float32).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.training_setup import N_PHASES, VOLUME_SIDE, flops_per_sample, paper_training, peak_rss_mb

VARIANTS = ("porejax", "porejax-bf16", "porejax-periodic", "torch")


def _porejax_worker(batch: int, variant: str):
    """Returns (run_one_iteration, compile_seconds)."""
    import jax

    from porejax import train

    precision = "bfloat16" if variant == "porejax-bf16" else "float32"
    latent = "periodic" if variant == "porejax-periodic" else "point"
    model_config, config, spec, mesh, state, arrays = paper_training(batch, precision, latent)
    start = time.perf_counter()
    step = train.make_step(model_config, config, spec, mesh).lower(state, arrays).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = step(holder["state"], arrays)
        jax.block_until_ready(metrics)

    return run, compile_s


def _torch_worker(batch: int):
    import torch

    from benchmarks.torch_reference import TrainStep

    torch.set_num_threads(2)
    model = TrainStep(n_phases=N_PHASES)
    volume = torch.randint(0, N_PHASES, (VOLUME_SIDE,) * 3, generator=torch.Generator().manual_seed(0))
    crop = 64

    def run() -> None:
        origins = torch.randint(0, VOLUME_SIDE - crop + 1, (batch, 3))
        crops = torch.stack([volume[a : a + crop, b : b + crop, c : c + crop] for a, b, c in origins.tolist()])
        real = torch.nn.functional.one_hot(crops.long(), N_PHASES).permute(0, 4, 1, 2, 3).float()
        model(real)

    return run, 0.0


def worker(variant: str, batch: int) -> None:
    """Line protocol on stdin/stdout: prints {"ready"}, then one {"seconds"} per "step", {"peak_rss_mb"} on "exit"."""
    run, compile_s = _torch_worker(batch) if variant == "torch" else _porejax_worker(batch, variant)
    print(json.dumps({"ready": True, "compile_s": compile_s}), flush=True)
    for line in sys.stdin:
        if line.strip() == "step":
            start = time.perf_counter()
            run()
            print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        else:
            break
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), flush=True)


def _start(variant: str, batch: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one device, default flags
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.train_step", "--worker", variant, "--batch", str(batch)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )


def _ask(proc: subprocess.Popen, command: str | None) -> dict:
    if command is not None:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark worker exited with status {proc.wait()}")
    return json.loads(line)


def measure(batch: int, variants: list[str], rounds: int, warmup: int) -> dict:
    """Interleaved timing of all variants at one batch size; workers run one after another, never at once."""
    procs = {}
    result: dict = {}
    for v in variants:  # start (and compile) one at a time so compiles do not overlap
        procs[v] = _start(v, batch)
        result[v] = {"compile_s": round(_ask(procs[v], None)["compile_s"], 2), "times_s": []}
    for r in range(warmup + rounds):
        for v in variants:
            t = _ask(procs[v], "step")["seconds"]
            if r >= warmup:
                result[v]["times_s"].append(round(t, 3))
    for v in variants:
        result[v]["peak_rss_mb"] = round(_ask(procs[v], "exit")["peak_rss_mb"])
        procs[v].wait()
        times = sorted(result[v]["times_s"])
        result[v]["median_s"] = times[len(times) // 2]
        result[v]["gflops_per_s"] = round(flops_per_sample() * batch / result[v]["median_s"] / 1e9, 1)
    if "torch" in variants:
        for v in variants:
            if v != "torch":
                result[v]["speedup_vs_torch"] = round(result["torch"]["median_s"] / result[v]["median_s"], 3)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["porejax", "torch"], choices=VARIANTS)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker != "torch":
        from porejax.host import reuse_freed_memory

        reuse_freed_memory()  # all but the PyTorch worker, as `porejax train` does on CPU (before JAX starts)
    if args.worker:
        worker(args.worker, args.batch[0])
        return
    out = {
        "benchmark": "train_step",
        "flops_per_sample_gflop": round(flops_per_sample() / 1e9, 2),
        "crop": 64,
        "widths": {"g": [512, 256, 128, 64], "d": [16, 32, 64, 128]},
        "k": 2,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "load_average_start": os.getloadavg(),
        "batches": {},
    }
    for batch in args.batch:
        out["batches"][str(batch)] = measure(batch, args.variants, args.rounds, args.warmup)
        print(json.dumps({"batch": batch, **out["batches"][str(batch)]}), file=sys.stderr, flush=True)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
