"""Run the throughput benchmarks and rewrite their sections of benchmarks/RESULTS.md.

Runs benchmarks/train_step.py (iterations at batch 1, 4, 8), layer_times.py, profile_step.py,
precision.py (mixed-precision statistics) and generation.py, stores each JSON document in benchmarks/results/, and
rewrites
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

from benchmarks.precision import t_95

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
JSON_DIR = ROOT / "benchmarks" / "results"
TITLE = "# porejax benchmark results"
OWN_SECTIONS = ("## Training throughput", "## Generation", "## Profile")
NOTES_POINTER = "What was tried for speed, and what was kept: benchmarks/NOTES.md.\n"

RUNS = {
    "train_step": [
        "-m",
        "benchmarks.train_step",
        "--batch",
        "1",
        "4",
        "8",
        "--rounds",
        "9",
        "--variants",
        "porejax",
        "porejax-bf16",
        "porejax-periodic",
        "torch",
    ],
    "layers": ["-m", "benchmarks.layer_times", "--batch", "8", "--rounds", "3"],
    "profile": ["-m", "benchmarks.profile_step", "--batch", "8", "--precision", "float32"],
    "profile_bf16": ["-m", "benchmarks.profile_step", "--batch", "8", "--precision", "bfloat16"],
    "precision": ["-m", "benchmarks.precision", "--check", "1500"],
    "update_noise": ["-m", "benchmarks.precision", "--update-noise", "300"],
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
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16") if f" {f}" in flags)
    mem = (
        next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        / 2**20
    )
    versions = []
    for module in ("jax", "jaxlib", "flax", "numpy", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} (not installed)")
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores ({isa}), {mem:.0f} GB RAM, no GPU; "
        f"Python {platform.python_version()}; {', '.join(versions)}."
    )


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


def training_section(train: dict | None, layers: dict | None, precision: dict | None, update_noise: dict | None) -> str:
    out = ["## Training throughput", ""]
    if train:
        out += [
            f"Seconds per paper training iteration (one D update + k = 2 G updates, 64^3 crops, widths "
            f"G 512..64 / D 16..128, {train['flops_per_sample_gflop']} GFLOP per sample), median of "
            f"{train['rounds']} iterations after {train['warmup']} warm-up ones, variants interleaved "
            f"iteration by iteration, each in its own process on the same 2 CPU threads "
            f"(`python -m benchmarks.train_step`, {train['date']}, {_load_note(train)}). "
            "Speedup = PyTorch time / porejax time.",
            "",
        ]
        rows = []
        for batch, res in train["batches"].items():
            torch_s = res.get("torch", {}).get("median_s")
            for v, r in res.items():
                name = {
                    "porejax": "porejax float32",
                    "porejax-bf16": "porejax bfloat16 products",
                    "porejax-periodic": "porejax float32, periodic latents",
                    "torch": "PyTorch reference float32",
                }.get(v, v)
                rows.append(
                    [
                        batch,
                        name,
                        r["median_s"],
                        f"{min(r['times_s'])}-{max(r['times_s'])}",
                        r.get("speedup_vs_torch", "1" if v == "torch" else ""),
                        round(r["gflops_per_s"]),
                        r["compile_s"] if v != "torch" else "-",
                        r["peak_rss_mb"],
                    ]
                )
            del torch_s
        out += [
            _table(
                [
                    "batch",
                    "variant",
                    "s/iteration (median)",
                    "range",
                    "speedup vs PyTorch",
                    "GFLOP/s",
                    "compile s",
                    "peak RSS MB",
                ],
                rows,
            ),
            "",
        ]
    if layers:
        forms = [
            f
            for f in ("textbook", "xla", "subpixel-xla", "porejax", "porejax-bf16", "torch")
            if f in next(iter(layers["layers"].values()))
        ]
        names = {
            "textbook": "textbook XLA",
            "xla": "XLA formulation (GPU/TPU default)",
            "subpixel-xla": "sub-pixel / s2d + XLA conv (before)",
            "porejax": "matrix products f32 (now)",
            "porejax-bf16": "matrix products bf16",
            "torch": "PyTorch",
        }
        out += [
            f"Layer by layer, forward + backward (input and kernel gradients), batch {layers['batch']}, "
            f"median wall ms of {layers['rounds']} interleaved rounds (`python -m benchmarks.layer_times`, "
            f"{layers['date']}, {_load_note(layers)}):",
            "",
        ]
        rows = [[name, r["gflop_fwd_bwd"], *[r.get(f, "") for f in forms]] for name, r in layers["layers"].items()]
        totals = [
            "total",
            round(sum(r["gflop_fwd_bwd"] for r in layers["layers"].values()), 1),
            *[round(sum(r[f] for r in layers["layers"].values()), 1) for f in forms],
        ]
        out += [_table(["layer", "GFLOP", *[names[f] for f in forms]], rows + [totals]), ""]
    if precision:
        seeds, cmp = precision["seeds"], precision["comparison"]
        out += [
            f"Mixed precision (bfloat16 products except in the generator's last and the discriminator's first layer; "
            "float32 weights / normalisation / optimiser) against float32: "
            f"{precision['steps']} steps of the {precision['model']} on the {precision['data']}, each precision "
            f"from {len(seeds)} seeds, so that the run-to-run noise of GAN training is measured within each "
            f"precision (`python -m benchmarks.precision --check {precision['steps']}`, "
            f"{precision['date']}). Per run: means over its second half (losses and D outputs every 10 steps; "
            "generated volume fractions and surface areas of the quick evaluations, 8 volumes each); below, "
            f"mean ± standard deviation of those over the {len(seeds)} runs of each precision, the difference "
            "of the means, its standard error (from the spread within each precision) and t = difference / "
            "standard error.",
            "",
        ]
        rows = []
        for key, c in cmp.items():
            c = {name: v if isinstance(v, list) else [v] for name, v in c.items()}  # scalars as one "phase"
            for i in range(len(c["t"])):
                rows.append(
                    [
                        f"{key} phase {i}" if len(c["t"]) > 1 else key,
                        f"{c['float32_mean'][i]} ± {c['float32_std'][i]}",
                        f"{c['bfloat16_mean'][i]} ± {c['bfloat16_std'][i]}",
                        c["difference"][i],
                        c["standard_error"][i],
                        c["t"][i],
                    ]
                )
        out += [_table(["quantity", "float32", "bfloat16", "difference", "standard error", "t"], rows), ""]
        dof = 2 * (len(seeds) - 1)
        beyond = [r[0] for r in rows if abs(r[5]) > t_95(dof)]
        out += [
            f"|t| above {t_95(dof):.3f} (two-sided 5% with {dof} degrees of freedom): {', '.join(beyond) or 'none'} of "
            f"{len(rows)} quantities (about {0.05 * len(rows):.1f} expected by chance without an effect of the "
            f"precision). {precision.get('note', '')}".strip(),
            "",
        ]
    if update_noise:
        u = update_noise
        out += [
            f"One update, bfloat16 against float32 (`python -m benchmarks.precision --update-noise "
            f"{u['steps_trained']}`, {u['date']}): the {u['model']} trained {u['steps_trained']} float32 steps on "
            f"the {u['data']}, then one step from that state with {u['draws']} different keys (real crops and "
            "latents), each in both precisions. Precision error: distance between the bfloat16 and float32 "
            "updates of the same key; sampling noise: distance between the float32 updates of two keys (the "
            "noise every SGD step already has); bias: the bfloat16 change of the mean update over the keys, "
            "relative to that mean update (a systematic change would accumulate).",
            "",
        ]
        rows = [
            [
                net,
                u[net]["update_norm"],
                u[net]["precision_error"],
                u[net]["sampling_noise"],
                u[net]["error_over_noise"],
                u[net]["bias"],
            ]
            for net in ("g", "d")
        ]
        out += [
            _table(["network", "update norm", "precision error", "sampling noise", "error / noise", "bias"], rows),
            "",
        ]
        out += [
            f"bfloat16 moves one update by {100 * u['g']['error_over_noise']:.1f}% (G) and "
            f"{100 * u['d']['error_over_noise']:.1f}% (D) of the distance that drawing other crops and latents "
            "moves it, and the mean update by "
            f"{100 * u['g']['bias']:.1f}% / {100 * u['d']['bias']:.1f}%. float32 stays the default (a float32 "
            "checkpoint generates what a float32 reference does to 1e-5, e.g. an imported PyTorch generator); "
            "bfloat16 is opt-in (`--precision bfloat16`; the checkpoint then generates with bfloat16 products too). "
            f"{u.get('note', '')}".strip(),
            "",
        ]
    return "\n".join(out)


def generation_section(gen: dict | None) -> str:
    out = ["## Generation", ""]
    if not gen:
        return "\n".join(out)
    out += [
        f"Paper generator, one volume per latent side a (side 16 (a + 3)), steady time of the second call "
        f"(first call with compilation in parentheses), each point its own process (`python -m "
        f"benchmarks.generation`, {gen['date']}, {_load_note(gen)}). porejax: `FrozenGenerator.slabs` "
        "(labels + confidence; default tiling: one piece up to 384^3, tiles of 256 above, layer crops); "
        "PyTorch: one-shot, eval mode, probabilities + argmax + max.",
        "",
    ]
    torch_by_side = {p["side"]: p for p in gen["points"]["torch"]}
    rows = []
    for p in gen["points"]["porejax"]:
        t = torch_by_side.get(p["side"])
        rows.append(
            [
                p["side"],
                f"{p['voxels'] / 1e6:.1f}",
                f"{p['steady_s']} ({p['first_s']})",
                p["peak_rss_mb"],
                f"{t['steady_s']} ({t['first_s']})" if t else "not run",
                t["peak_rss_mb"] if t else "",
                round(t["steady_s"] / p["steady_s"], 2) if t else "",
            ]
        )
    out += [
        _table(
            ["side", "Mvoxels", "porejax s", "porejax peak RSS MB", "PyTorch s", "PyTorch peak RSS MB", "speedup"], rows
        ),
        "",
    ]
    for name, fit in gen["fits"].items():
        label = "PyTorch" if name == "torch" else "porejax"
        out.append(
            f"- {label}: {fit['voxels_per_s'] / 1e6:.2f} M voxels/s ({fit['seconds_per_million_voxels']} s per "
            f"million voxels, intercept {fit['intercept_s']} s), R² {fit['r2']} over {fit['points']} sizes."
        )
    if "speedup_vs_torch" in gen:
        out.append(f"- Speedup (PyTorch / porejax) on the common sizes: median {gen['speedup_vs_torch']['median']}.")
    if "cli_512" in gen:
        c = gen["cli_512"]
        out.append(
            f"- `{c['command']}`: {c['wall_s']} s wall (process start, checkpoint load, compilation, "
            f"generation, TIFF), peak RSS {c['peak_rss_mb']} MB, file {c['file_mb']} MB."
        )
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
        out += [
            f"One paper training iteration, batch {prof['batch']}, {prof['precision']} products "
            f"({prof['wall_s_per_iteration']} s wall; `jax.profiler` trace, time per XLA op; "
            f"`python -m benchmarks.profile_step --precision {prof['precision']}`, {prof['date']}, "
            f"load {prof['load_average'][0]:.1f}). By kind: "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in prof["by_kind"].items())
            + ".",
            "",
        ]
        rows = [
            [o["op"], _output_shape(o["hlo"]), o["kind"], o["ms"], f"{100 * o['share']:.1f}%"]
            for o in prof["top_ops"][:10]
        ]
        out += [_table(["XLA op", "output", "kind", "ms", "share"], rows), ""]
    return "\n".join(out)


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
    head = (
        f"{TITLE}\n\n{machine()}\n\nEach section names the script that produced it and the load on the "
        "machine while it ran (other jobs share these 2 cores: ratios from interleaved runs hold better than "
        "absolute times). `python -m benchmarks.run_all` regenerates the sections it owns.\n"
    )
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
        "## Training throughput": training_section(
            _load("train_step"), _load("layers"), _load("precision"), _load("update_noise")
        )
        + "\n"
        + NOTES_POINTER,
        "## Generation": generation_section(_load("generation")),
        "## Profile": profile_section([_load("profile"), _load("profile_bf16")]),
    }
    rewrite(sections)
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
