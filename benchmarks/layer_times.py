"""Layer by layer: forward + backward (input and kernel gradients) of each of the paper's layers, median
wall ms, in several formulations and PyTorch, interleaved round by round.

    python -m benchmarks.layer_times [--batch 8] [--rounds 3] [--forms xla porejax torch]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

# (name, transposed, input side, C_in, C_out, stride, padding) of the paper's networks
LAYERS = [
    ("G1", True, 1, 100, 512, 1, 0),
    ("G2", True, 4, 512, 256, 2, 1),
    ("G3", True, 8, 256, 128, 2, 1),
    ("G4", True, 16, 128, 64, 2, 1),
    ("G5", True, 32, 64, 3, 2, 1),
    ("D1", False, 64, 3, 16, 2, 1),
    ("D2", False, 32, 16, 32, 2, 1),
    ("D3", False, 16, 32, 64, 2, 1),
    ("D4", False, 8, 64, 128, 2, 1),
    ("D5", False, 4, 128, 1, 1, 0),
]
LAYER_FORMS = ("textbook", "xla", "subpixel-xla", "porejax", "porejax-bf16", "torch")


def layer_times(batch: int, forms: list[str], rounds: int) -> dict:
    """Forward + backward (input and kernel gradients) per layer, median wall ms, forms interleaved.

    textbook: input dilation / strided conv (`*_reference`); xla: the layers' XLA formulation (the GPU/TPU
    default); subpixel-xla: the exact stride-1 rewrites with XLA's convolution; porejax: the same rewrites as
    matrix products (float32; -bf16: bfloat16 products, float32 kernel; the CPU default); torch: PyTorch's
    Conv3d / ConvTranspose3d.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from porejax.nn import layers, matmul_conv

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
                conv = functools.partial(conv, form="xla" if form == "xla" else "matmul")
            dtype = jnp.bfloat16 if form == "porejax-bf16" else jnp.float32

            def fb(x, w, g, conv=conv, dtype=dtype):
                y, vjp = jax.vjp(lambda x, w: conv(x.astype(dtype), w, s, p), x, w)
                return y, vjp(g)

            saved = matmul_conv.IM2COL_MAX_BYTES, matmul_conv._in_slabs
            if form == "subpixel-xla":  # every stride-1 product as XLA's convolution
                matmul_conv.IM2COL_MAX_BYTES = 0
                matmul_conv._in_slabs = lambda form, x, kernel, pads, modes, size: matmul_conv.conv_valid(
                    matmul_conv.extend(x, pads, modes), kernel
                )
            compiled = jax.jit(fb).lower(x, w, g).compile()
            matmul_conv.IM2COL_MAX_BYTES, matmul_conv._in_slabs = saved
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
        out[name] = {
            "gflop_fwd_bwd": round(flops / 1e9, 2),
            **{f: round(1e3 * float(np.median(v)), 1) for f, v in times.items()},
        }
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--forms", nargs="+", choices=LAYER_FORMS, default=list(LAYER_FORMS[1:]))
    args = parser.parse_args(argv)
    print(
        json.dumps(
            {
                "benchmark": "layers",
                "batch": args.batch,
                "unit": "ms (median wall, fwd + bwd)",
                "rounds": args.rounds,
                "load_average_start": os.getloadavg(),
                "layers": layer_times(args.batch, args.forms, args.rounds),
                "load_average_end": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
