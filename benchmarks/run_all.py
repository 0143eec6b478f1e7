"""Run the throughput benchmarks and rewrite their sections of benchmarks/RESULTS.md.

Runs benchmarks/train_step.py (iterations at batch 1, 4, 8; layer by layer; profile; mixed-precision
statistics) and benchmarks/generation.py, stores each JSON document in benchmarks/results/, and rewrites
the top of RESULTS.md (title, machine and versions) and the sections `## Training throughput`,
`## Generation` and `## Profile`; every other section is kept as it is.

    python -m benchmarks.run_all                 # everything (about an hour on an idle 2-core machine)
    python -m benchmarks.run_all --only layers   # one benchmark
    python -m benchmarks.run_all --from-json     # rewrite RESULTS.md from the stored JSON only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.train_step import T_95

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
JSON_DIR = ROOT / "benchmarks" / "results"
TITLE = "# porejax benchmark results"
OWN_SECTIONS = ("## Training throughput", "## Generation", "## Profile")

RUNS = {
    "train_step": ["-m", "benchmarks.train_step", "--batch", "1", "4", "8", "--rounds", "9",
                   "--variants", "porejax", "porejax-bf16", "porejax-periodic", "torch"],
    "layers": ["-m", "benchmarks.train_step", "--batch", "8", "--rounds", "3", "--layers"],
    "profile": ["-m", "benchmarks.train_step", "--batch", "8", "--profile", "float32"],
    "profile_bf16": ["-m", "benchmarks.train_step", "--batch", "8", "--profile", "bfloat16"],
    "precision": ["-m", "benchmarks.train_step", "--precision-check", "1500"],
    "update_noise": ["-m", "benchmarks.train_step", "--update-noise", "300"],
    "generation": ["-m", "benchmarks.generation"],
}


def run(name: str) -> dict:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, *RUNS[name]], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    result["date"] = datetime.date.today().isoformat()
    JSON_DIR.mkdir(exist_ok=True)
    (JSON_DIR / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16") if f" {f}" in flags)
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal")) / 2**20
    versions = []
    for module in ("jax", "jaxlib", "flax", "numpy", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} (not installed)")
    return (f"Machine: {cpu}, {os.cpu_count()} cores ({isa}), {mem:.0f} GB RAM, no GPU; "
            f"Python {platform.python_version()}; {', '.join(versions)}.")


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _load(name: str) -> dict | None:
    path = JSON_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _load_note(result: dict) -> str:
    a, b = result.get("load_average_start", [0])[0], result.get("load_average_end", [0])[0]
    return f"load average {a:.1f} at the start, {b:.1f} at the end"


def training_section(train: dict | None, layers: dict | None, precision: dict | None,
                     update_noise: dict | None) -> str:
    out = ["## Training throughput", ""]
    if train:
        out += [f"Seconds per paper training iteration (one D update + k = 2 G updates, 64^3 crops, widths "
                f"G 512..64 / D 16..128, {train['flops_per_sample_gflop']} GFLOP per sample), median of "
                f"{train['rounds']} iterations after {train['warmup']} warm-up ones, variants interleaved "
                f"iteration by iteration, each in its own process on the same 2 CPU threads "
                f"(`python -m benchmarks.train_step`, {train['date']}, {_load_note(train)}). "
                "Speedup = PyTorch time / porejax time.", ""]
        rows = []
        for batch, res in train["batches"].items():
            torch_s = res.get("torch", {}).get("median_s")
            for v, r in res.items():
                name = {"porejax": "porejax float32", "porejax-bf16": "porejax bfloat16 products",
                        "porejax-periodic": "porejax float32, periodic latents",
                        "torch": "PyTorch reference float32"}.get(v, v)
                rows.append([batch, name, r["median_s"], f"{min(r['times_s'])}-{max(r['times_s'])}",
                             r.get("speedup_vs_torch", "1" if v == "torch" else ""),
                             round(r["gflops_per_s"]), r["compile_s"] if v != "torch" else "-", r["peak_rss_mb"]])
            del torch_s
        out += [_table(["batch", "variant", "s/iteration (median)", "range", "speedup vs PyTorch", "GFLOP/s",
                        "compile s", "peak RSS MB"], rows), ""]
    if layers:
        forms = [f for f in ("textbook", "subpixel-xla", "porejax", "porejax-bf16", "torch")
                 if f in next(iter(layers["layers"].values()))]
        names = {"textbook": "textbook XLA", "subpixel-xla": "sub-pixel / s2d + XLA conv (before)",
                 "porejax": "matrix products f32 (now)", "porejax-bf16": "matrix products bf16", "torch": "PyTorch"}
        out += [f"Layer by layer, forward + backward (input and kernel gradients), batch {layers['batch']}, "
                f"median wall ms of {layers['rounds']} interleaved rounds (`python -m benchmarks.train_step "
                f"--layers`, {layers['date']}, {_load_note(layers)}):", ""]
        rows = [[name, r["gflop_fwd_bwd"], *[r.get(f, "") for f in forms]] for name, r in layers["layers"].items()]
        totals = ["total", round(sum(r["gflop_fwd_bwd"] for r in layers["layers"].values()), 1),
                  *[round(sum(r[f] for r in layers["layers"].values()), 1) for f in forms]]
        out += [_table(["layer", "GFLOP", *[names[f] for f in forms]], rows + [totals]), ""]
    if precision:
        seeds, cmp = precision["seeds"], precision["comparison"]
        out += [f"Mixed precision (bfloat16 products except in the generator's last and the discriminator's first layer; "
                "float32 weights / normalisation / optimiser) against float32: "
                f"{precision['steps']} steps of the {precision['model']} on the {precision['data']}, each precision "
                f"from {len(seeds)} seeds, so that the run-to-run noise of GAN training is measured within each "
                f"precision (`python -m benchmarks.train_step --precision-check {precision['steps']}`, "
                f"{precision['date']}). Per run: means over its second half (losses and D outputs every 10 steps; "
                "generated volume fractions and surface areas of the quick evaluations, 8 volumes each); below, "
                f"mean ± standard deviation of those over the {len(seeds)} runs of each precision, the difference "
                "of the means, its standard error (from the spread within each precision) and t = difference / "
                "standard error.", ""]
        rows = []
        for key, c in cmp.items():
            c = {name: v if isinstance(v, list) else [v] for name, v in c.items()}  # scalars as one "phase"
            for i in range(len(c["t"])):
                rows.append([f"{key} phase {i}" if len(c["t"]) > 1 else key,
                             f"{c['float32_mean'][i]} ± {c['float32_std'][i]}",
                             f"{c['bfloat16_mean'][i]} ± {c['bfloat16_std'][i]}",
                             c["difference"][i], c["standard_error"][i], c["t"][i]])
        out += [_table(["quantity", "float32", "bfloat16", "difference", "standard error", "t"], rows), ""]
        dof = 2 * (len(seeds) - 1)
        beyond = [r[0] for r in rows if abs(r[5]) > T_95[dof]]
        out += [f"|t| above {T_95[dof]} (two-sided 5% with {dof} degrees of freedom): {', '.join(beyond) or 'none'} of "
                f"{len(rows)} quantities (about {0.05 * len(rows):.1f} expected by chance without an effect of the "
                f"precision). {precision.get('note', '')}".strip(), ""]
    if update_noise:
        u = update_noise
        out += [f"One update, bfloat16 against float32 (`python -m benchmarks.train_step --update-noise "
                f"{u['steps_trained']}`, {u['date']}): the {u['model']} trained {u['steps_trained']} float32 steps on "
                f"the {u['data']}, then one step from that state with {u['draws']} different keys (real crops and "
                "latents), each in both precisions. Precision error: distance between the bfloat16 and float32 "
                "updates of the same key; sampling noise: distance between the float32 updates of two keys (the "
                "noise every SGD step already has); bias: the bfloat16 change of the mean update over the keys, "
                "relative to that mean update (a systematic change would accumulate).", ""]
        rows = [[net, u[net]["update_norm"], u[net]["precision_error"], u[net]["sampling_noise"],
                 u[net]["error_over_noise"], u[net]["bias"]] for net in ("g", "d")]
        out += [_table(["network", "update norm", "precision error", "sampling noise", "error / noise", "bias"],
                       rows), ""]
        out += [f"bfloat16 moves one update by {100 * u['g']['error_over_noise']:.1f}% (G) and "
                f"{100 * u['d']['error_over_noise']:.1f}% (D) of the distance that drawing other crops and latents "
                "moves it, and the mean update by "
                f"{100 * u['g']['bias']:.1f}% / {100 * u['d']['bias']:.1f}%. float32 stays the default (a float32 "
                "checkpoint generates what a float32 reference does to 1e-5, e.g. an imported PyTorch generator); "
                "bfloat16 is opt-in (`--precision bfloat16`; the checkpoint then generates with bfloat16 products too). "
                f"{u.get('note', '')}".strip(), ""]
    return "\n".join(out)


def generation_section(gen: dict | None) -> str:
    out = ["## Generation", ""]
    if not gen:
        return "\n".join(out)
    out += [f"Paper generator, one volume per latent side a (side 16 (a + 3)), steady time of the second call "
            f"(first call with compilation in parentheses), each point its own process (`python -m "
            f"benchmarks.generation`, {gen['date']}, {_load_note(gen)}). porejax: `FrozenGenerator.slabs` "
            "(labels + confidence; default tiling: one piece up to 384^3, tiles of 256 above, layer crops); PyTorch: one-shot, eval mode, "
            "probabilities + argmax + max.", ""]
    torch_by_side = {p["side"]: p for p in gen["points"]["torch"]}
    rows = []
    for p in gen["points"]["porejax"]:
        t = torch_by_side.get(p["side"])
        rows.append([p["side"], f"{p['voxels'] / 1e6:.1f}", f"{p['steady_s']} ({p['first_s']})", p["peak_rss_mb"],
                     f"{t['steady_s']} ({t['first_s']})" if t else "not run", t["peak_rss_mb"] if t else "",
                     round(t["steady_s"] / p["steady_s"], 2) if t else ""])
    out += [_table(["side", "Mvoxels", "porejax s", "porejax peak RSS MB", "PyTorch s", "PyTorch peak RSS MB",
                    "speedup"], rows), ""]
    for name, fit in gen["fits"].items():
        label = "PyTorch" if name == "torch" else "porejax"
        out.append(f"- {label}: {fit['voxels_per_s'] / 1e6:.2f} M voxels/s ({fit['seconds_per_million_voxels']} s per "
                   f"million voxels, intercept {fit['intercept_s']} s), R² {fit['r2']} over {fit['points']} sizes.")
    if "speedup_vs_torch" in gen:
        out.append(f"- Speedup (PyTorch / porejax) on the common sizes: median {gen['speedup_vs_torch']['median']}.")
    if "cli_512" in gen:
        c = gen["cli_512"]
        out.append(f"- `{c['command']}`: {c['wall_s']} s wall (process start, checkpoint load, compilation, "
                   f"generation, TIFF), peak RSS {c['peak_rss_mb']} MB, file {c['file_mb']} MB.")
    if "plot" in gen:
        out += ["", f"![generation scaling]({Path(gen['plot']).name})"]
    return "\n".join(out) + "\n"


def _output_shape(hlo: str) -> str:
    """The result type of an HLO instruction line, e.g. f32[39304,1024] (matrix products: [M, N])."""
    found = re.search(r" = (\w+\[[0-9,]*\])", hlo)
    return found.group(1) if found else ""


def profile_section(profiles: list[dict]) -> str:
    out = ["## Profile", ""]
    for prof in profiles:
        if not prof:
            continue
        out += [f"One paper training iteration, batch {prof['batch']}, {prof['precision']} products "
                f"({prof['wall_s_per_iteration']} s wall; `jax.profiler` trace, time per XLA op; "
                f"`python -m benchmarks.train_step --profile {prof['precision']}`, {prof['date']}, "
                f"load {prof['load_average'][0]:.1f}). By kind: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in prof["by_kind"].items()) + ".", ""]
        rows = [[o["op"], _output_shape(o["hlo"]), o["kind"], o["ms"], f"{100 * o['share']:.1f}%"]
                for o in prof["top_ops"][:10]]
        out += [_table(["XLA op", "output", "kind", "ms", "share"], rows), ""]
    return "\n".join(out)


NOTES = """Formulations (porejax/nn/layers.py; each tested against the textbook form, values and gradients, float32
within 1e-5 relative to scale: tests/test_layers.py, tests/test_layers_fast.py):
- kept: stride-2 transposed convolution as a sub-pixel convolution and stride-2 convolution as
  space-to-depth (exact stride-1 rewrites, from before); now with the exact input windows (the union of
  the phases' windows, or one convolution per phase when that union would compute over 30% more);
- kept: every stride-1 convolution as patches x matrix (im2col) or matrix x overlap-add (col2im, when
  C_out < C_in), with custom VJPs whose backward passes are also one patch matrix and two matrix products
  (no XLA convolution, no scatter); bounded by 1 GiB of patches, above which XLA's convolution is used
  (large generation tiles);
- kept: the overlap-add places each tap's slice into the output instead of zero-padding the whole
  intermediate first. Same values (bit for bit); the paper's end layers, whose 4^3 kernel overhangs a 1^3
  or 4^3 input on every side, no longer pad a 343x / 5x larger copy: G1 (1^3 -> 4^3) forward + backward
  263-320 -> 72-90 ms, D5 (4^3 -> 1^3) 54-64 -> 2.5-3 ms at batch 8 (`--layers`, interleaved, shared CPU);
  the full training step did not change measurably (XLA had already simplified most of it there);
- kept (opt-in): bfloat16 products with float32 accumulation and float32 weights (`dtype` of the conv
  modules); new: the generator's last layer (its logits) and the discriminator's first (which reads the
  phase probabilities) stay float32, so that fake probabilities near 1 are not rounded to steps of 2^-8
  while the real crops are exactly one-hot (statistics above);
- kept: generation rearranges each transposed convolution's kernel into its sub-pixel form once
  per `FrozenGenerator` (`subpixel_kernel`, a variable collection the layers read) instead of in every
  call (the paper's 4^3 x 512 x 256 kernel: a gather and a transpose of 33 MB per call, repeated for every
  tile). Same values (bit for bit). Generation median speedup 1.39 -> 1.48 between the two runs of the
  generation section (other load differed: 1.0-2.0 before, 1.9-2.1 now);
- tried, not kept: `--xla_cpu_use_onednn` with oneDNN dot fusion: +20% on float32 matrix products alone,
  but the full training step crashes (SIGILL after "partition compile failed"); autodiff of the
  im2col/col2im forms instead of the custom VJPs (XLA materialises one padded copy per tap: 1.3-5x slower
  backward); a batched (phase-as-batch) dot_general: slower than per-phase products; XLA's library
  choices for the CPU products (`--xla_cpu_experimental_ynn_fusion_type`, batch 4, interleaved, shared CPU):
  without YNNPACK (Eigen products) 14.95 vs 6.28 s per iteration, YNNPACK also fusing elementwise ops and
  reductions (`individual_dot,dot,eltwise,reduce`) 6.97 vs 6.10 s, YNNPACK convolutions
  (`individual_dot,individual_convolution`) 14.91 vs 6.10 s: the default is the fastest;
- kept: kernel gradients laid out for XLA's CPU products. Written as one `dot_general` over batch
  and space, XLA chose the layouts itself; for the generator's last layer (x [262144, 64] against the
  patches of dy [262144, 192]) it transposed x (86-96 ms, BatchNorm fused in) and ran the product at
  ~46 GFLOP/s (140-270 ms, twice per iteration), where 8 summed row-block products take 48 ms stand-alone.
  Now: both sides >= 256 wide -> one product with a transposed operand in its own array (im2col builds
  the transposed patches from the input moved channels-first: a transpose of x, not of the 8x larger
  patches); narrower -> 8 row-block products summed. Full iteration, batch 8, interleaved processes:
  5.10 vs 5.35 s (this form vs the previous commit, 6 rounds), 4.84-4.96 vs 5.45-5.52 s (two variants of
  it vs the single `dot_general`, 5-6 rounds). Values and gradients tested for both layouts
  (`test_kernel_gradient_layouts`);
- kept (`porejax/host.py`): glibc's malloc keeps freed memory for the next call. XLA's CPU runtime
  allocates each call's temporary buffers afresh (one 1.6 GB block per batch-8 iteration, 1 GB at batch 4);
  glibc served them with mmap and unmapped them on free, so every iteration faulted in and zeroed them
  again: 420-530k page faults and 0.7-3.2 s of system time per batch-8 iteration. With one arena, no
  mmap and no trimming (`reuse_freed_memory`, applied by `porejax train` and by this benchmark's porejax
  processes): 0 faults and 0.01-0.02 s of system time once the heap has settled (after 1-3 iterations).
  Batch 8: 4.35-4.76 vs 5.92-6.34 s per iteration in interleaved pairs of processes (6-8 rounds; paired
  with another faulting process instead, a faulting one took 4.63-4.90 s), 4.3 vs 4.75 s one process
  after the other. Cost: the resident size stays at its peak, and the heap can hold about two temporary
  blocks (batch 8: up to 4.3 instead of 2.8 GB; 2.65 GB in the run above). Not applied to generation:
  there it is 7-30% faster, but its peak RSS grows 16-56% (5.2 -> 8.1 GB at 384^3), and generation's
  memory is meant to stay bounded by the tile. Tried, not kept: transparent huge pages for the blocks
  (glibc tunable `glibc.malloc.hugetlb=1`): 5.3k faults and 0.84 s system time, but no faster (5.23 vs
  5.28 s one after the other); running several iterations per call (a `fori_loop`, so the block is
  allocated once per call): 5.13-5.31 s per iteration, slower than one iteration per call; glibc's 2 GB
  trim threshold (mallopt's largest positive value) instead of none: the heap was trimmed every few
  iterations, each trim bringing back a 420k-fault iteration (7.2 s);
- tried, not kept: `--xla_cpu_prefer_vector_width=512`: 5.34 vs 5.07 s. All-phase threshold 1.5 or 1.1
  instead of 1.3: 4.97 / 4.99 vs 4.75 s;
- kept (new): the sub-pixel kernel is rearranged by reversals (the permutation s (q - 1 - t) + (r + p) mod s
  of the taps: for s = 2 and odd p a reversal of both split axes) instead of a gather along each axis, whose
  gradient scattered into three zero-filled copies of the kernel (33 MB each for the 4^3 -> 8^3 layer).
  Same values. That layer (512 -> 256 channels), forward + backward at batch 8, 7 rounds in each of two
  runs: 146-161 vs 174-175 ms (a reversal plus `roll`: 178-195 ms). The full iteration did not change
  measurably (interleaved, median of 8 rounds 4.95 vs 4.96 s);
- tried, not kept (new):
  - wide products split into products of 128 columns: alone, XLA's CPU product runs [32768, 1024] x
    [1024, N] at 204-206 GFLOP/s for N = 64-128 but 161-163 for N = 256-1024. Split and concatenated
    (forward and input gradient): 4.54 vs 4.37 s per iteration (batch 8, 8 interleaved rounds; the
    concatenation is materialised); forward only, split at phase boundaries so that the phase windows
    read the parts directly (no concatenation left in the HLO): 4.44 vs 4.33 s (10 rounds); generation
    at side 256: 5.9-7.0 vs 6.0-7.4 s (no measurable change);
  - the forward's patches kept for the kernel gradient instead of rebuilt: 4.73 vs 4.54 s;
  - the 16^3 -> 32^3 layer's backward as the strided convolution it is (space-to-depth patches of the
    output gradient, 64 x 64 wide: no union waste): 516 vs 507 ms for that layer's backward alone;
  - XLA's scheduler options: `--xla_cpu_scheduler_type=CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED` 4.42 vs
    4.46 s (12 rounds), `--xla_cpu_enable_concurrency_optimized_scheduler=false` 4.68 vs 4.77 s,
    `--xla_cpu_experimental_enable_tiling_propagation=true` 4.84 vs 4.77 s (7 rounds): within noise;
  - BatchNorm and ReLU applied before depth-to-space (the statistics do not depend on the order): 33 vs
    45 ms forward and 85 vs 101 ms backward for the 32^3 layer in isolation, about 70 ms per iteration at
    most; not pursued, because it would move the generator's normalisation into the layer;
- layer by layer against PyTorch (`python -m benchmarks.train_step --layers porejax torch`, batch 8,
  forward + backward, median ms of 5 rounds, PyTorch vs porejax; measured with the `roll` form of the
  kernel above): PyTorch's oneDNN convolutions are faster on every layer but G5 in isolation (sum 1262 vs
  1724 ms): G1 14.0 vs 24.2, G2 126 vs 178, G3 223 vs 303, G4 484 vs 723, G5 254 vs 241, D1 85 vs 118,
  D2 44 vs 72, D3 18 vs 35, D4 14 vs 27, D5 0.6 vs 2.9. The full iterations are nevertheless at parity,
  so the rest of the iteration (normalisation, activations, losses, optimiser), which XLA fuses, must cost
  PyTorch more than porejax (inferred; PyTorch's side was not profiled);
- where float32 still stands (profile above): at parity with PyTorch (0.90-1.09x over batch 1-8 in the
  last two runs); the products run near what these shapes reach alone on this machine (stand-alone
  float32 products, 2 threads: [39304, 1024] x [1024, 512] 152-162 GFLOP/s, the transposed-patches kernel
  gradient 197-206, [262144, 64] x [64, 192]
  61-63; the input- and kernel-gradient products of the 16^3 -> 32^3 layer run concurrently, ~190
  GFLOP/s together). That layer's union window computes 20% more rows than the phases need; tried, not
  kept: phases computed group by group along the leading axes (exact windows there, the union on
  the others), split until the union wastes at most 1.3 / 1.15 / 1.08: 4.45 / 4.69 / 4.96 vs 4.64 s
  (batch 8, 7 interleaved rounds), then 4.62 vs 4.55 s (batch 8) and 2.28 vs 2.22 s (batch 4) for 1.3
  (10 rounds each): narrower products lose what the smaller windows save. Copies and elementwise work
  (patches, phase windows, depth-to-space, BatchNorm) are about a third of the op time; PyTorch's oneDNN
  convolutions build no patches;
- the benchmark's `porejax` variants now train on the paper's 1^3 latents, as the PyTorch reference does
  (the same computation); porejax's default periodic latents (4^3, circular padding in every generator
  layer) do more work and are timed as their own variant (`porejax-periodic`, 14-19% slower). Before this,
  the table compared periodic-latent porejax against the point-latent reference.
"""


def rewrite(sections: dict[str, str]) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("## ") and current:
            blocks.append("\n".join(current).rstrip() + "\n")
            current = []
        current.append(line)
    if current:
        blocks.append("\n".join(current).rstrip() + "\n")
    others = [b for b in blocks if b.startswith("## ") and not b.startswith(OWN_SECTIONS)]
    head = (f"{TITLE}\n\n{machine()}\n\nEach section names the script that produced it and the load on the "
            "machine while it ran (other jobs share these 2 cores: ratios from interleaved runs hold better than "
            "absolute times). `python -m benchmarks.run_all` regenerates the sections it owns.\n")
    own = [sections[name] for name in OWN_SECTIONS]
    RESULTS.write_text("\n".join([head, *own, *others]).rstrip() + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(RUNS), help="run only these benchmarks")
    parser.add_argument("--from-json", action="store_true", help="do not run anything; rewrite from stored JSON")
    args = parser.parse_args(argv)
    if not args.from_json:
        for name in args.only or RUNS:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            run(name)
    sections = {
        "## Training throughput": training_section(_load("train_step"), _load("layers"), _load("precision"),
                                                  _load("update_noise")) + "\n" + NOTES,
        "## Generation": generation_section(_load("generation")),
        "## Profile": profile_section([_load("profile"), _load("profile_bf16")]),
    }
    rewrite(sections)
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
