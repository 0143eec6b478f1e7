"""Train on the NMC cathode, holding out the last 64 slices along x for evaluation.

    python -m experiments.train_cathode [--data FILE] [--preset cpu|paper] [--workdir DIR] [--steps N] [--resume]

Default data: the built-in synthetic cathode (pore / NMC / binder). The real volume is
`../shared/data/cathode_nmc_256.tif` (labels 0/85/170 = pore/NMC/CBD, voxel 0.390625 um). The held-out
region (x slices [X - 64, X) of every volume) is recorded in the workdir's porejax.json under
data.holdout, so an evaluation can use exactly that region.
"""

from __future__ import annotations

import sys

from porejax.dataset import load_volumes
from porejax.synthetic import default_dataset

from experiments._training import parser, run

HOLDOUT = 64
VOXEL_UM = 0.390625
NAMES = ("pore", "nmc", "cbd")


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], "runs/cathode").parse_args(argv)
    if args.data:
        volumes, phase_map = load_volumes(args.data, NAMES, VOXEL_UM)
        sources = [p.name for p in args.data]
    else:
        print(
            "note: training on the built-in synthetic cathode; for the real one pass "
            "--data ../shared/data/cathode_nmc_256.tif (labels 0/85/170 = pore/NMC/CBD, 0.390625 um voxels)",
            file=sys.stderr,
        )
        volume, phase_map = default_dataset("cathode", 160)
        volumes, sources = [volume], ["synthetic cathode 160^3, seed 0"]
    return run(args, volumes, phase_map, HOLDOUT, sources)


if __name__ == "__main__":
    sys.exit(main())
