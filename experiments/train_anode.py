"""Train on the SOFC anode (pore / Ni / YSZ).

    python -m experiments.train_anode [--data FILE ...] [--preset cpu|paper] [--workdir DIR] [--steps N] [--resume]

Default data: the built-in synthetic anode. The stand-in for real data is the paper's own GENERATED
volumes, not tomography: `../shared/data/paper_generated/sofc/periodic/sofc_*.tif` (five 64^3 volumes
made with circular padding, labels 0/128/255 = pore/Ni/YSZ, voxel 0.065 um). Each is tiled 2 x 2 x 2
(they wrap around) so that crops cross the volume boundary as they would inside a larger sample. No
slices are held out (a tiled volume repeats itself, so no region of it is independent): evaluate
against other volumes, e.g. the paper's non-periodic ones or a synthetic anode of another seed.
"""

from __future__ import annotations

import sys

import numpy as np

from porejax.dataset import load_volumes
from porejax.synthetic import default_dataset

from experiments._training import parser, run

VOXEL_UM = 0.065
NAMES = ("pore", "ni", "ysz")
TILES = (2, 2, 2)


def main(argv=None) -> int:
    args = parser(__doc__.splitlines()[0], "runs/anode").parse_args(argv)
    if args.data:
        volumes, phase_map = load_volumes(args.data, NAMES, VOXEL_UM)
        volumes = [np.tile(v, TILES) for v in volumes]
        sources = [f"{p.name} tiled {TILES}" for p in args.data]
    else:
        print(
            "note: training on the built-in synthetic anode; the paper's generated SOFC volumes (not "
            "tomography) are a stand-in: --data ../shared/data/paper_generated/sofc/periodic/sofc_0.tif "
            "(repeat --data for sofc_1..4; labels 0/128/255 = pore/Ni/YSZ, 0.065 um voxels)",
            file=sys.stderr,
        )
        volume, phase_map = default_dataset("anode", 128)
        volumes, sources = [volume], ["synthetic anode 128^3, seed 0"]
    return run(args, volumes, phase_map, 0, sources)


if __name__ == "__main__":
    sys.exit(main())
