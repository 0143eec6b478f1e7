"""Per-op profile of one paper training iteration (jax.profiler trace, XLA op names), grouped by kind.

    python -m benchmarks.profile_step [--batch 8] [--precision float32|bfloat16] [--latent point|periodic]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.training_setup import paper_training


def _op_kind(name: str, hlo: dict[str, str]) -> str:
    text = hlo.get(name, "")
    if "__onednn" in text or name.startswith(("ynn_fusion", "xnn_fusion", "dot")) or " dot(" in text:
        return "matrix product"
    if "convolution" in text or name.startswith("convolution"):
        return "XLA convolution"
    if name.startswith(("wrapped_", "copy", "transpose")) or "transpose" in name or "copy" in name:
        return "copy / transpose / pad"
    return "fused elementwise / reduce / slice"


def profile(batch: int, precision: str, latent: str = "point", calls: int = 2) -> dict:
    """Per-HLO-op time of the real training iteration (jax.profiler trace; XLA op names), grouped."""
    import collections
    import glob
    import gzip
    import tempfile

    import jax

    from porejax import train

    model_config, config, spec, mesh, state, arrays = paper_training(batch, precision, latent)
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
    top = [
        {
            "op": name,
            "ms": round(ms, 1),
            "share": round(ms / total, 4),
            "kind": _op_kind(name, hlo),
            "hlo": hlo[name][:160],
        }
        for name, ms in per_op.most_common(15)
    ]
    return {
        "batch": batch,
        "precision": precision,
        "latent": latent,
        "wall_s_per_iteration": round(wall, 2),
        "op_ms_total": round(total, 1),
        "load_average": os.getloadavg(),
        "by_kind": {k: round(v / total, 4) for k, v in kinds.most_common()},
        "top_ops": top,
        "by_op_ms": {name: round(ms, 2) for name, ms in per_op.most_common()},
        "hlo": {name: hlo[name][:300] for name in per_op},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--latent", choices=("point", "periodic"), default="point", help="training latents")
    args = parser.parse_args(argv)
    from porejax.host import reuse_freed_memory

    reuse_freed_memory()  # as `porejax train` does on CPU (before JAX starts)
    print(json.dumps({"benchmark": "profile", **profile(args.batch, args.precision, args.latent)}, indent=1))


if __name__ == "__main__":
    main()
