"""bfloat16 against float32 products: training statistics over seeds, and one update against its sampling noise.

    python -m benchmarks.precision --check STEPS [--seeds 0 1 2 3 4] [--reuse JSON]
    python -m benchmarks.precision --update-noise STEPS

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.training_setup import synthetic_cpu_run

PRECISION_SEEDS = (0, 1, 2, 3, 4)  # seeds per precision: the run-to-run noise of GAN training, measured in each arm
PRECISION_KEYS = ("loss_d", "loss_g", "d_real", "d_fake")


def t_95(dof: int) -> float:
    """Two-sided 95% point of Student's t with `dof` degrees of freedom (2 (seeds - 1) for the comparison)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, dof))


def precision_run(precision: str, steps: int, seed: int) -> list[dict]:
    """Train the cpu preset on the synthetic cathode for `steps` steps (float32 or bfloat16 products) from
    `seed`; returns the log records (losses, D outputs, quick evaluations every steps / 10 steps)."""
    import tempfile
    from pathlib import Path

    from porejax import train

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_cpu_run(Path(tmp), precision, steps, seed, log_every=10, eval_every=max(10, steps // 10))
        return [json.loads(line) for line in (Path(tmp) / train.LOG_FILE).read_text().splitlines()]


def _run_statistics(records: list[dict], steps: int) -> dict:
    """Means over the second half of a run: losses, D outputs, and the quick evaluations' generated volume
    fractions and surface areas per phase (with the real crops' values)."""
    import numpy as np

    last = [r for r in records if r["step"] > steps // 2]
    evals = [r["eval"] for r in last if "eval" in r]
    out = {f"{k}_mean_second_half": round(float(np.mean([r[k] for r in last])), 4) for k in PRECISION_KEYS}
    for key in ("vf", "vf_real", "ssa", "ssa_real"):
        out[key] = [round(float(v), 4) for v in np.mean([e[key] for e in evals], axis=0)]
    out["evaluations"] = len(evals)
    return out


def precision_comparison(runs: dict, seeds) -> dict:
    """From per-run summaries named "<precision> seed <k>": per quantity (per phase for vf and ssa) the mean
    and standard deviation over the seeds of each precision, the difference of the means (bfloat16 - float32),
    its standard error from the seed-to-seed spread within each precision, and t = difference / standard
    error. Without an effect of the precision |t| stays below t_95(2 (seeds - 1)) in 95% of quantities."""
    import numpy as np

    keys = [f"{k}_mean_second_half" for k in PRECISION_KEYS] + ["vf", "ssa"]
    out = {}
    for key in keys:
        arms = {
            p: np.array([runs[f"{p} seed {seed}"][key] for seed in seeds], dtype=float) for p in ("float32", "bfloat16")
        }
        f32, bf16 = arms["float32"], arms["bfloat16"]
        difference = bf16.mean(0) - f32.mean(0)
        error = np.sqrt(bf16.var(0, ddof=1) / len(bf16) + f32.var(0, ddof=1) / len(f32))
        values = {
            "float32_mean": f32.mean(0),
            "float32_std": f32.std(0, ddof=1),
            "bfloat16_mean": bf16.mean(0),
            "bfloat16_std": bf16.std(0, ddof=1),
            "difference": difference,
            "standard_error": error,
            "t": difference / error,
        }
        out[key.replace("_mean_second_half", "")] = {k: np.round(v, 4).tolist() for k, v in values.items()}
    return out


def precision_check(steps: int, seeds=PRECISION_SEEDS, reuse: dict | None = None) -> dict:
    """float32 vs bfloat16 products, each from `seeds`: second-half means of losses, D outputs, generated
    volume fractions and surface areas per run, and `precision_comparison`. Runs of the same length stored
    in `reuse` (an earlier result) are kept, only the missing ones are trained."""
    kept = reuse if reuse and reuse.get("steps") == steps else {}
    runs, speed = dict(kept.get("runs", {})), dict(kept.get("steps_per_s", {}))
    for seed in seeds:
        for precision in ("float32", "bfloat16"):
            name = f"{precision} seed {seed}"
            if name in runs:
                continue
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.precision",
                    "--worker",
                    precision,
                    "--check",
                    str(steps),
                    "--seed",
                    str(seed),
                ],
                capture_output=True,
                text=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            if proc.returncode:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1])
            records = json.loads(proc.stdout)
            runs[name] = _run_statistics(records, steps)
            speed[name] = records[-1].get("steps_per_s")
            print(json.dumps({name: runs[name]}), file=sys.stderr, flush=True)
    runs = {f"{p} seed {seed}": runs[f"{p} seed {seed}"] for seed in seeds for p in ("float32", "bfloat16")}
    return {"seeds": list(seeds), "runs": runs, "comparison": precision_comparison(runs, seeds), "steps_per_s": speed}


def update_noise(steps: int, draws: int = 6) -> dict:
    """How far bfloat16 products move one training update, against how far the sampling already moves it.

    Trains the cpu preset `steps` steps in float32 on the synthetic cathode, then from that state takes one
    step with `draws` different keys (real crops and latents), each in float32 and in bfloat16. Per network:
    precision error = ||update_bf16 - update_f32|| for the same key; sampling noise = ||update_f32(key i) -
    update_f32(key j)||, i != j (the minibatch and latent noise that SGD training already has); bias =
    ||mean over keys of (update_bf16 - update_f32)|| / ||mean over keys of update_f32|| (a systematic change of
    the expected update would accumulate over steps where noise averages out). Updates are the parameter
    changes of the step (Adam-scaled, with the trained moments).
    """
    import dataclasses
    import itertools
    import tempfile
    from pathlib import Path

    import jax
    import jax.numpy as jnp
    import numpy as np

    from porejax import checkpoint, dataset, train

    mesh = train.make_mesh(jax.devices()[:1])
    with tempfile.TemporaryDirectory() as tmp:
        volume, phase_map, model_config, config = synthetic_cpu_run(
            Path(tmp), "float32", steps, log_every=steps, eval_every=steps
        )
        target = jax.eval_shape(lambda: train.init_state(model_config, config)).to_dict()
        state = train.TrainState(**checkpoint.restore_state(Path(tmp), target, steps)[0])
    stack, shapes = dataset.prepare([volume], phase_map, model_config.crop_size)
    spec = dataset.CropSpec(model_config.crop_size, config.batch_size, phase_map.n_phases, shapes)
    arrays = jax.device_put(dataset.device_arrays(stack, spec))

    def flat(tree) -> np.ndarray:
        return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])

    updates = {}  # (precision, draw) -> {net: flat parameter change}
    for precision in ("float32", "bfloat16"):
        step = train.make_step(dataclasses.replace(model_config, compute_dtype=precision), config, spec, mesh)
        for i in range(draws):
            new, _ = step(jax.tree.map(jnp.copy, state.replace(key=jax.random.PRNGKey(1000 + i))), arrays)
            updates[precision, i] = {
                net: flat(getattr(new, net)) - flat(getattr(state, net)) for net in ("g_params", "d_params")
            }

    out = {"steps_trained": steps, "draws": draws, "model": "cpu preset", "data": "synthetic cathode 96^3"}
    for net in ("g_params", "d_params"):
        f32 = [updates["float32", i][net] for i in range(draws)]
        errors = [updates["bfloat16", i][net] - f32[i] for i in range(draws)]
        error = np.median([np.linalg.norm(e) for e in errors])
        noise = np.median([np.linalg.norm(f32[i] - f32[j]) for i, j in itertools.combinations(range(draws), 2)])
        out[net.split("_")[0]] = {
            "update_norm": round(float(np.median([np.linalg.norm(u) for u in f32])), 6),
            "precision_error": round(float(error), 6),
            "sampling_noise": round(float(noise), 6),
            "error_over_noise": round(float(error / noise), 4),
            "bias": round(float(np.linalg.norm(np.mean(errors, axis=0)) / np.linalg.norm(np.mean(f32, axis=0))), 4),
        }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument(
        "--check",
        type=int,
        metavar="STEPS",
        help="train the cpu preset STEPS steps with float32 and bfloat16 products from each of --seeds",
    )
    task.add_argument(
        "--update-noise",
        type=int,
        metavar="STEPS",
        help="after STEPS float32 steps, the bfloat16 change of one update vs its sampling noise",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(PRECISION_SEEDS))
    parser.add_argument("--reuse", metavar="JSON", help="with --check: keep the runs of this earlier result")
    parser.add_argument("--worker", choices=("float32", "bfloat16"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from porejax.host import reuse_freed_memory

    reuse_freed_memory()  # as `porejax train` does on CPU (before JAX starts)
    if args.worker:
        print(json.dumps(precision_run(args.worker, args.check, args.seed)))
    elif args.check:
        reuse = json.loads(open(args.reuse).read()) if args.reuse else None
        print(
            json.dumps(
                {
                    "benchmark": "mixed_precision",
                    "steps": args.check,
                    "model": "cpu preset",
                    "data": "synthetic cathode 96^3",
                    **precision_check(args.check, args.seeds, reuse),
                },
                indent=1,
            )
        )
    else:
        print(
            json.dumps(
                {"benchmark": "update_noise", "date": time.strftime("%Y-%m-%d"), **update_noise(args.update_noise)},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
