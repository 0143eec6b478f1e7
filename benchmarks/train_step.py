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

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

N_PHASES = 3
VOLUME_SIDE = 96
VARIANTS = ("porejax", "porejax-bf16", "porejax-periodic", "torch")


def flops_per_sample(g_widths=(512, 256, 128, 64), d_widths=(16, 32, 64, 128), latent=100, n_phases=N_PHASES,
                     k: int = 2) -> float:
    """Floating-point operations of one iteration per sample, counting what PyTorch's autograd computes.

    Forward cost of a layer = 2 * k^3 * C_in * C_out per input voxel (transposed convolution) or per
    output voxel (convolution), kernel k = 4. Backward = input and weight gradients (2x forward), without
    the input gradient of layers whose input needs none (G1: the latent; D1 in the D update: data and
    detached fakes).
    """
    g_channels = (latent, *g_widths, n_phases)
    g_inputs = [1] + [4 * 2**i for i in range(len(g_widths))]                  # input sides 1, 4, 8, 16, 32
    g = [2 * n**3 * 64 * a * b for n, a, b in zip(g_inputs, g_channels[:-1], g_channels[1:])]
    d_channels = (n_phases, *d_widths, 1)
    d_outputs = [32 // 2**i for i in range(len(d_widths))] + [1]                # output sides 32, 16, 8, 4, 1
    d = [2 * n**3 * 64 * a * b for n, a, b in zip(d_outputs, d_channels[:-1], d_channels[1:])]
    g_fwd, d_fwd = sum(g), sum(d)
    d_step = g_fwd + 2 * d_fwd + 2 * d_fwd + 2 * (d_fwd - d[0])                # fwd, weight grads, input grads
    g_step = g_fwd + d_fwd + 2 * d_fwd + 2 * g_fwd - g[0]
    return float(d_step + k * g_step)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def paper_training(batch: int, precision: str = "float32", latent: str = "point"):
    """The paper's networks and recipe at `batch` on a random label volume, one CPU device:
    (model_config, train_config, crop spec, mesh, fresh state, device data arrays). `latent`: "point"
    (the paper's 1^3 training latents) or "periodic" (porejax's default)."""
    import dataclasses

    import jax
    import numpy as np

    from porejax import dataset, train
    from porejax.models import preset
    from porejax.volume import PhaseMap

    model_config = dataclasses.replace(preset("paper", N_PHASES), compute_dtype=precision)
    config = train.TrainConfig(batch_size=batch, latent=latent).resolved()
    volume = np.random.default_rng(0).integers(0, N_PHASES, (VOLUME_SIDE,) * 3).astype(np.uint8)
    stack, shapes = dataset.prepare([volume], PhaseMap((0, 1, 2)), model_config.crop_size)
    spec = dataset.CropSpec(model_config.crop_size, batch, N_PHASES, shapes)
    mesh = train.make_mesh(jax.devices()[:1])
    state = train.init_state(model_config, config)
    return model_config, config, spec, mesh, state, jax.device_put(dataset.device_arrays(stack, spec))


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
        crops = torch.stack([volume[a:a + crop, b:b + crop, c:c + crop] for a, b, c in origins.tolist()])
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
    print(json.dumps({"peak_rss_mb": _peak_rss_mb()}), flush=True)


def _start(variant: str, batch: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one device, default flags
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, "-m", "benchmarks.train_step", "--worker", variant, "--batch", str(batch)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env)


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


# --- layer by layer ----------------------------------------------------------------------------------
# (name, transposed, input side, C_in, C_out, stride, padding) of the paper's networks
LAYERS = [("G1", True, 1, 100, 512, 1, 0), ("G2", True, 4, 512, 256, 2, 1), ("G3", True, 8, 256, 128, 2, 1),
          ("G4", True, 16, 128, 64, 2, 1), ("G5", True, 32, 64, 3, 2, 1),
          ("D1", False, 64, 3, 16, 2, 1), ("D2", False, 32, 16, 32, 2, 1), ("D3", False, 16, 32, 64, 2, 1),
          ("D4", False, 8, 64, 128, 2, 1), ("D5", False, 4, 128, 1, 1, 0)]
LAYER_FORMS = ("textbook", "subpixel-xla", "porejax", "porejax-bf16", "torch")


def layer_times(batch: int, forms: list[str], rounds: int) -> dict:
    """Forward + backward (input and kernel gradients) per layer, median wall ms, forms interleaved.

    textbook: input dilation / strided conv (`*_reference`); subpixel-xla: the exact stride-1 rewrites
    with XLA's convolution (the previous formulation); porejax: the same rewrites as matrix products
    (float32; -bf16: bfloat16 products, float32 kernel); torch: PyTorch's Conv3d / ConvTranspose3d.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from porejax.nn import layers

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    out = {}
    for name, transposed, n, c_in, c_out, s, p in LAYERS:
        m = (n - 1) * s - 2 * p + 4 if transposed else (n + 2 * p - 4) // s + 1
        x = rng.normal(size=(batch, n, n, n, c_in)).astype(np.float32)
        w = (0.02 * rng.normal(size=(4, 4, 4, c_in, c_out))).astype(np.float32)
        g = rng.normal(size=(batch, m, m, m, c_out)).astype(np.float32)
        fns = {}
        for form in forms:
            if form == "torch":
                mod = (torch.nn.ConvTranspose3d if transposed else torch.nn.Conv3d)(c_in, c_out, 4, s, p, bias=False)
                tx = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()).requires_grad_()
                tg = torch.from_numpy(g.transpose(0, 4, 1, 2, 3).copy())

                def run(mod=mod, tx=tx, tg=tg):
                    mod.zero_grad()
                    tx.grad = None
                    mod(tx).backward(tg)
                fns[form] = run
                continue
            if form == "textbook":
                conv = layers.conv_transpose3d_reference if transposed else layers.conv3d_reference
            else:
                conv = layers.conv_transpose3d if transposed else layers.conv3d
            dtype = jnp.bfloat16 if form == "porejax-bf16" else jnp.float32

            def fb(x, w, g, conv=conv, dtype=dtype):
                y, vjp = jax.vjp(lambda x, w: conv(x.astype(dtype), w, s, p), x, w)
                return y, vjp(g)

            saved = layers.IM2COL_MAX_BYTES
            layers.IM2COL_MAX_BYTES = 0 if form == "subpixel-xla" else saved
            compiled = jax.jit(fb).lower(x, w, g).compile()
            layers.IM2COL_MAX_BYTES = saved
            args = tuple(jnp.asarray(a) for a in (x, w, g))
            fns[form] = lambda compiled=compiled, args=args: jax.block_until_ready(compiled(*args))
        times = {f: [] for f in fns}
        for r in range(rounds + 1):
            for f, run in fns.items():
                start = time.perf_counter()
                run()
                if r:
                    times[f].append(time.perf_counter() - start)
        flops = 3 * 2 * batch * (n if transposed else m) ** 3 * 64 * c_in * c_out
        out[name] = {"gflop_fwd_bwd": round(flops / 1e9, 2),
                     **{f: round(1e3 * float(np.median(v)), 1) for f, v in times.items()}}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return out


# --- profile ----------------------------------------------------------------------------------------------
def _op_kind(name: str, hlo: dict[str, str]) -> str:
    text = hlo.get(name, "")
    if "__onednn" in text or name.startswith(("ynn_fusion", "xnn_fusion", "dot")) or " dot(" in text:
        return "matrix product"
    if "convolution" in text or name.startswith("convolution"):
        return "XLA convolution"
    if name.startswith(("wrapped_", "copy", "transpose")) or "transpose" in name or "copy" in name:
        return "copy / transpose / pad"
    return "fused elementwise / reduce / slice"


def profile(batch: int, precision: str, calls: int = 2) -> dict:
    """Per-HLO-op time of the real training iteration (jax.profiler trace; XLA op names), grouped."""
    import collections
    import glob
    import gzip
    import tempfile

    import jax

    from porejax import train

    model_config, config, spec, mesh, state, arrays = paper_training(batch, precision)
    step = train.make_step(model_config, config, spec, mesh).lower(state, arrays).compile()
    hlo = {}
    for line in step.as_text().splitlines():
        line = line.strip()
        if " = " in line:
            hlo[line.split(" = ")[0].replace("ROOT ", "").lstrip("%")] = line
    state, metrics = step(state, arrays)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(calls):
                state, metrics = step(state, arrays)
                jax.block_until_ready(metrics)
        wall = (time.perf_counter() - start) / calls
        events = json.load(gzip.open(glob.glob(f"{tmp}/**/perfetto_trace.json.gz", recursive=True)[0]))["traceEvents"]
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in hlo:
            per_op[e["name"]] += e.get("dur", 0) / 1e3 / calls
    total = sum(per_op.values())
    kinds: collections.Counter = collections.Counter()
    for name, ms in per_op.items():
        kinds[_op_kind(name, hlo)] += ms
    top = [{"op": name, "ms": round(ms, 1), "share": round(ms / total, 4), "kind": _op_kind(name, hlo),
            "hlo": hlo[name][:160]} for name, ms in per_op.most_common(15)]
    return {"batch": batch, "precision": precision, "wall_s_per_iteration": round(wall, 2),
            "op_ms_total": round(total, 1), "load_average": os.getloadavg(),
            "by_kind": {k: round(v / total, 4) for k, v in kinds.most_common()}, "top_ops": top}


# --- mixed precision: training statistics -------------------------------------------------------------
PRECISION_SEEDS = (0, 1, 2, 3, 4)  # seeds per precision: the run-to-run noise of GAN training, measured in each arm
PRECISION_KEYS = ("loss_d", "loss_g", "d_real", "d_fake")
# two-sided 95% points of Student's t by degrees of freedom, 2 (seeds - 1) for the precision comparison
T_95 = {2: 4.303, 4: 2.776, 6: 2.447, 8: 2.306, 10: 2.228}


def _synthetic_cpu_run(workdir, precision: str, steps: int, seed: int = 0, **cadence):
    """Train the cpu preset on the synthetic cathode 96^3 into `workdir` for `steps` steps (float32 or
    bfloat16 products); returns (volume, phase_map, model_config, train_config)."""
    from porejax import synthetic, train
    from porejax.volume import PhaseMap

    volume = synthetic.cathode(96, seed=0)
    phase_map = PhaseMap.from_volume(volume)
    config = train.train_preset("cpu", steps=steps, checkpoint_every=steps, seed=seed, **cadence)
    model_config = train.model_for("cpu", phase_map.n_phases, precision=precision)
    train.train([volume], phase_map, workdir, model_config, config, progress=False)
    return volume, phase_map, model_config, config


def precision_run(precision: str, steps: int, seed: int) -> list[dict]:
    """Train the cpu preset on the synthetic cathode for `steps` steps (float32 or bfloat16 products) from
    `seed`; returns the log records (losses, D outputs, quick evaluations every steps / 10 steps)."""
    import tempfile
    from pathlib import Path

    from porejax import train

    with tempfile.TemporaryDirectory() as tmp:
        _synthetic_cpu_run(Path(tmp), precision, steps, seed, log_every=10, eval_every=max(10, steps // 10))
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
    error. Without an effect of the precision |t| stays below T_95[2 (seeds - 1)] in 95% of quantities."""
    import numpy as np

    keys = [f"{k}_mean_second_half" for k in PRECISION_KEYS] + ["vf", "ssa"]
    out = {}
    for key in keys:
        arms = {p: np.array([runs[f"{p} seed {seed}"][key] for seed in seeds], dtype=float)
                for p in ("float32", "bfloat16")}
        f32, bf16 = arms["float32"], arms["bfloat16"]
        difference = bf16.mean(0) - f32.mean(0)
        error = np.sqrt(bf16.var(0, ddof=1) / len(bf16) + f32.var(0, ddof=1) / len(f32))
        values = {"float32_mean": f32.mean(0), "float32_std": f32.std(0, ddof=1), "bfloat16_mean": bf16.mean(0),
                  "bfloat16_std": bf16.std(0, ddof=1), "difference": difference, "standard_error": error,
                  "t": difference / error}
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
            proc = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--precision-worker", precision,
                                   "--precision-check", str(steps), "--seed", str(seed)], capture_output=True,
                                  text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
        volume, phase_map, model_config, config = _synthetic_cpu_run(Path(tmp), "float32", steps, log_every=steps,
                                                                     eval_every=steps)
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
            updates[precision, i] = {net: flat(getattr(new, net)) - flat(getattr(state, net))
                                     for net in ("g_params", "d_params")}

    out = {"steps_trained": steps, "draws": draws, "model": "cpu preset", "data": "synthetic cathode 96^3"}
    for net in ("g_params", "d_params"):
        f32 = [updates["float32", i][net] for i in range(draws)]
        errors = [updates["bfloat16", i][net] - f32[i] for i in range(draws)]
        error = np.median([np.linalg.norm(e) for e in errors])
        noise = np.median([np.linalg.norm(f32[i] - f32[j]) for i, j in itertools.combinations(range(draws), 2)])
        out[net.split("_")[0]] = {
            "update_norm": round(float(np.median([np.linalg.norm(u) for u in f32])), 6),
            "precision_error": round(float(error), 6), "sampling_noise": round(float(noise), 6),
            "error_over_noise": round(float(error / noise), 4),
            "bias": round(float(np.linalg.norm(np.mean(errors, axis=0)) / np.linalg.norm(np.mean(f32, axis=0))), 4)}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=5, help="timed iterations per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["porejax", "torch"], choices=VARIANTS)
    parser.add_argument("--layers", nargs="*", choices=LAYER_FORMS,
                        help="instead: layer-by-layer forward + backward ms at the first --batch for these forms "
                             f"(no value: {' '.join(LAYER_FORMS[1:])})")
    parser.add_argument("--precision-check", type=int, metavar="STEPS",
                        help="instead: train the cpu preset STEPS steps with float32 and bfloat16 products from "
                             "each of --precision-seeds")
    parser.add_argument("--precision-seeds", type=int, nargs="+", default=list(PRECISION_SEEDS))
    parser.add_argument("--reuse", metavar="JSON", help="with --precision-check: keep the runs of this earlier result")
    parser.add_argument("--update-noise", type=int, metavar="STEPS",
                        help="instead: after STEPS float32 steps, the bfloat16 change of one update vs its sampling noise")
    parser.add_argument("--profile", choices=("float32", "bfloat16"),
                        help="instead: per-op profile of one iteration at the first --batch")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--precision-worker", choices=("float32", "bfloat16"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker != "torch":
        from porejax.host import reuse_freed_memory

        reuse_freed_memory()  # all but the PyTorch worker, as `porejax train` does (before JAX starts)
    if args.worker:
        worker(args.worker, args.batch[0])
        return
    if args.precision_worker:
        print(json.dumps(precision_run(args.precision_worker, args.precision_check, args.seed)))
        return
    if args.profile:
        print(json.dumps({"benchmark": "profile", **profile(args.batch[0], args.profile)}, indent=1))
        return
    if args.precision_check:
        reuse = json.loads(open(args.reuse).read()) if args.reuse else None
        print(json.dumps({"benchmark": "mixed_precision", "steps": args.precision_check,
                          "model": "cpu preset", "data": "synthetic cathode 96^3",
                          **precision_check(args.precision_check, args.precision_seeds, reuse)}, indent=1))
        return
    if args.update_noise:
        print(json.dumps({"benchmark": "update_noise", "date": time.strftime("%Y-%m-%d"),
                          **update_noise(args.update_noise)}, indent=1))
        return
    if args.layers is not None:
        forms = args.layers or list(LAYER_FORMS[1:])
        print(json.dumps({"benchmark": "layers", "batch": args.batch[0], "unit": "ms (median wall, fwd + bwd)",
                          "rounds": args.rounds, "load_average_start": os.getloadavg(),
                          "layers": layer_times(args.batch[0], forms, args.rounds),
                          "load_average_end": os.getloadavg()}, indent=1))
        return
    out = {"benchmark": "train_step", "flops_per_sample_gflop": round(flops_per_sample() / 1e9, 2),
           "crop": 64, "widths": {"g": [512, 256, 128, 64], "d": [16, 32, 64, 128]}, "k": 2,
           "rounds": args.rounds, "warmup": args.warmup,
           "load_average_start": os.getloadavg(), "batches": {}}
    for batch in args.batch:
        out["batches"][str(batch)] = measure(batch, args.variants, args.rounds, args.warmup)
        print(json.dumps({"batch": batch, **out["batches"][str(batch)]}), file=sys.stderr, flush=True)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
