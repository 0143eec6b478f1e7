"""Cut three 2D images from the NMC cathode for training from 2D: one central plane normal to each axis.

    python -m experiments.cathode_slices --data ../shared/data/cathode_nmc_256.tif --out runs/cathode_2d_images

The last 64 x-slices of the volume are the held-out region (as in `experiments.train_cathode`), so every
plane is taken from x in [0, X - 64): the plane normal to x at the centre of that range, (y, z) =
V[(X - 64) // 2]; the planes normal to y and z through the centre of the volume, restricted to that range:
(x, z) = V[:X - 64, Y // 2, :] and (x, y) = V[:X - 64, :, Z // 2] (the image axes of `porejax.slices`).
Writes OUT/x.tif, OUT/y.tif, OUT/z.tif and prints the `porejax train` command that uses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tifffile

from porejax.slices import volume_slices
from porejax.volume import read_volume

HOLDOUT = 64


def central_planes(volume, holdout: int = HOLDOUT) -> dict:
    """{"x": (Y, Z), "y": (X - holdout, Z), "z": (X - holdout, Y)} label images outside the held-out x-slices."""
    train = volume[: volume.shape[0] - holdout]
    planes = volume_slices(train)
    return {axis: planes[axis][planes[axis].shape[0] // 2] for axis in "xyz"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the 3D label volume")
    p.add_argument("--out", type=Path, required=True, help="folder for x.tif, y.tif, z.tif")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for axis, image in central_planes(read_volume(args.data)).items():
        tifffile.imwrite(args.out / f"{axis}.tif", image)
        print(f"wrote {args.out / f'{axis}.tif'}: plane normal to {axis}, {image.shape[0]}x{image.shape[1]}")
    flags = " ".join(f"--slices-{a} {args.out / f'{a}.tif'}" for a in "xyz")
    print(
        f"train with: porejax train {flags} --preset slices-cpu --names pore,nmc,cbd --voxel-size 0.390625 "
        "--workdir runs/slices2d"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
