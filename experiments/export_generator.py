"""Export a generation-only checkpoint (frozen generator + metadata, no optimiser state) from a run.

    python -m experiments.export_generator --checkpoint RUN_DIR --out DIR [--step N] [--stationary-latent 4]

With `--stationary-latent A` the BatchNorm statistics are re-estimated on periodic latents of side A
(`FrozenGenerator.with_stationary_statistics`): needed only for generators trained on the paper's 1^3
latents (`--latent point`, or imported from PyTorch), whose own statistics are wrong for periodic and large
volumes. Generators trained on periodic latents (the default) save statistics of periodic latents twice
the training side (`porejax.latents.statistics_latent`); runs saved before that estimated them on the
training side and gain from `--stationary-latent` (2x the training side: 8 for the cpu presets). The result is small
enough to commit (the cpu preset's generator is well under 1 MB) and `porejax generate` reads it.
"""

import argparse
from pathlib import Path

from porejax import checkpoint
from porejax.generate import load_generator


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--step", type=int, help="saved step to export (default the newest)")
    parser.add_argument(
        "--stationary-latent",
        type=int,
        default=0,
        help="re-estimate BatchNorm statistics on periodic latents of this side (0: keep)",
    )
    args = parser.parse_args(argv)
    meta = checkpoint.read_metadata(args.checkpoint)
    gen = load_generator(args.checkpoint, args.step)
    statistics = "as saved by training (its standing statistics)"
    if args.stationary_latent:
        gen = gen.with_stationary_statistics(latent_size=args.stationary_latent)
        statistics = f"stationary: re-estimated on periodic latents of side {args.stationary_latent}"
    extra = {k: v for k, v in meta.items() if k not in ("format", "version", "model", "phase_map", "exported")}
    exported = {"from_step": gen.step, "statistics": statistics}
    if "exported" in meta:  # exported again: keep how the source was made
        exported["source"] = meta["exported"]
    checkpoint.write_metadata(args.out, gen.config, gen.phase_map, **extra, exported=exported)
    checkpoint.save(args.out, gen.step, gen.variables)
    print(f"wrote {args.out}: step {gen.step}, statistics {statistics}")


if __name__ == "__main__":
    main()
