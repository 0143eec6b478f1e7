"""Training step cost: slice (2D) discriminators vs the 3D discriminator at the same field of view.

One generator network (periodic training latents, crop-sized volumes) and one set of discriminator widths;
the variants differ only in what the discriminator judges: `volume` (S^3 crops, the 3D discriminator),
`slices-all` (one 2D discriminator per axis, every S^2 slice normal to its axis of every generated volume,
against as many real slices), `slices-N` (N random slices per generated volume and axis), `volume+slices-N`
(the 3D discriminator beside the slice ones with N slices, the first N given). Real data: the
slices (or crops) of a synthetic cathode. All variants run in one process, their steps interleaved
A B C A B C ... so that other load on the machine hits each alike; the median step time after one warm-up
step is reported, with the cost per generated voxel (step time / (batch * S^3)) and compile time.

    python -m benchmarks.slice_step [--preset slices-cpu] [--batch 2] [--loss bce] [--per-volume 16 4] [--rounds 5]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import jax
import numpy as np

from porejax import presets, synthetic, train
from porejax.volume import PhaseMap


def _variant(name: str, model, config, volume: np.ndarray, phase_map: PhaseMap, mesh):
    """(compiled step, state, arrays, compile seconds) of one variant."""
    spec, host_arrays, _, _ = train.training_data([volume], None, phase_map, model, config, None)
    state = train.start_state(model, config, None, None, mesh)
    arrays = train.replicate(host_arrays, mesh)
    start = time.perf_counter()
    step = train.compile_step(model, config, spec, mesh, state, arrays)
    return step, state, arrays, time.perf_counter() - start


def measure(preset: str, batch: int, loss: str, per_volume: list[int], rounds: int, side: int) -> dict:
    phase_map = PhaseMap((0, 85, 170))
    model = presets.model(preset, phase_map.n_phases)
    base = train.TrainConfig(batch_size=batch, loss=loss).resolved()
    if loss == "wgan-gp" and model.d_norm == "batch":
        model = dataclasses.replace(model, d_norm="layer")
    crop = model.crop_size
    variants = {
        "volume": dataclasses.replace(base, discriminator="volume"),
        "slices-all": dataclasses.replace(base, discriminator="slices"),
    }
    variants.update(
        {
            f"slices-{n}": dataclasses.replace(base, discriminator="slices", slices_per_volume=n)
            for n in per_volume
            if n < crop
        }
    )
    variants.update(  # the 3D discriminator beside the slice ones (`--discriminator volume+slices`)
        {
            f"volume+slices-{n}": dataclasses.replace(base, discriminator="volume+slices", slices_per_volume=n)
            for n in per_volume[:1]
        }
    )
    volume = synthetic.cathode(side, seed=0)
    mesh = train.make_mesh()
    runs = {}
    for name, config in variants.items():
        step, state, arrays, compile_s = _variant(name, model, config, volume, phase_map, mesh)
        state, metrics = step(state, arrays)  # warm-up
        jax.block_until_ready(metrics)
        runs[name] = {"step": step, "state": state, "arrays": arrays, "compile_s": compile_s, "times": []}
        print(json.dumps({name: {"compile_s": round(compile_s, 1)}}), file=sys.stderr, flush=True)
    for _ in range(rounds):
        for run in runs.values():
            start = time.perf_counter()
            run["state"], metrics = run["step"](run["state"], run["arrays"])
            jax.block_until_ready(metrics)
            run["times"].append(time.perf_counter() - start)
    voxels = batch * crop**3
    out = {}
    for name, run in runs.items():
        median = statistics.median(run["times"])
        out[name] = {
            "step_s_median": round(median, 4),
            "step_s": [round(t, 4) for t in run["times"]],
            "us_per_generated_voxel": round(1e6 * median / voxels, 4),
            "compile_s": round(run["compile_s"], 1),
        }
    volume_s = out["volume"]["step_s_median"]
    for row in out.values():
        row["vs_volume"] = round(row["step_s_median"] / volume_s, 3)
    return {
        "preset": preset,
        "model": dataclasses.asdict(model),
        "batch": batch,
        "loss": loss,
        "field_of_view": crop,
        "generated_voxels_per_step": voxels,
        "rounds": rounds,
        "devices": [str(d) for d in jax.devices()],
        "variants": out,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="slices-cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--loss", default="bce", choices=("bce", "wgan-gp"))
    parser.add_argument("--per-volume", type=int, nargs="*", default=[16, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--side", type=int, default=96, help="side of the synthetic training volume")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.preset, args.batch, args.loss, args.per_volume, args.rounds, args.side), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
