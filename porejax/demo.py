"""The demo: train the tiny preset on the built-in synthetic cathode for 400 steps (a few minutes
on two CPU cores), then generate.

    porejax demo --out DIR

writes DIR/training_data.tif (the synthetic cathode), DIR/checkpoint/ (a training workdir: log.jsonl,
samples/, checkpoints), DIR/generated.tif (64^3), DIR/generated_periodic.tif (64^3, periodic in x, y
and z), DIR/slices.png (middle slices of all three, the periodic one tiled 2 x 2 to show that it
wraps seamlessly) and DIR/report/ (`porejax compare` of 8 real and 8 generated 32^3 volumes: report.md,
report.html, metrics.json, figures). Running it again on the same DIR reuses the trained checkpoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


from porejax import figures, presets, train
from porejax.generate import load_generator
from porejax.compare import compare
from porejax.synthetic import default_dataset
from porejax.volume import read_volume, write_volume

DEMO_STEPS = 400
DEMO_SIZE = 64
DEMO_COMPARE_N = 8  # volumes per set in the demo's compare report (small: the demo stays ~2 minutes)


def run_demo(out: str | os.PathLike, steps: int = DEMO_STEPS, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Train, generate and draw into `out`; returns the written paths by name."""
    out = Path(out)
    config = presets.recipe("tiny", steps=steps, seed=seed, eval_every=50, checkpoint_every=steps)  # checks steps
    out.mkdir(parents=True, exist_ok=True)
    volume, phase_map = default_dataset("cathode", DEMO_SIZE, seed=seed)
    paths = {
        "training_data": out / "training_data.tif",
        "checkpoint": out / "checkpoint",
        "generated": out / "generated.tif",
        "generated_periodic": out / "generated_periodic.tif",
        "slices": out / "slices.png",
    }
    write_volume(paths["training_data"], volume, phase_map.voxel_size)
    train.train(
        [volume],
        phase_map,
        paths["checkpoint"],
        presets.model("tiny", phase_map.n_phases),
        config,
        resume=paths["checkpoint"].is_dir(),
        preset="tiny",
        sources=[f"synthetic cathode {DEMO_SIZE}^3, seed {seed}"],
        progress=progress,
    )
    gen = load_generator(paths["checkpoint"])
    gen.write(paths["generated"], gen.latent(seed, gen.latent_size_for(DEMO_SIZE)), "", DEMO_SIZE)
    gen.write(paths["generated_periodic"], gen.latent(seed + 1, gen.latent_size_for(DEMO_SIZE, "xyz")), "xyz")
    volumes = {
        "training data": volume,
        "generated": read_volume(paths["generated"]),
        "generated, periodic": read_volume(paths["generated_periodic"]),
    }
    figures.save_png(figures.middle_slices(volumes, phase_map, tiled=("generated, periodic",)), paths["slices"])
    paths["report"] = out / "report"
    compare(
        paths["training_data"],
        paths["checkpoint"],
        n=DEMO_COMPARE_N,
        size=gen.config.crop_size,
        seed=seed,
        out=paths["report"],
        progress=(lambda line: print(line, file=sys.stderr)) if progress else None,
    )
    if progress:
        print("\n".join(f"wrote {p}" for p in paths.values()), file=sys.stderr)
    return paths
