"""Generation from a checkpoint: pure, periodic in any subset of axes, any size, chunked and streamed.

- `plan.py`: which latent voxels give which output voxels (sizes, halos, tiles, per-layer crops);
  `frozen.py`: `FrozenGenerator` and `load_generator`; `output.py`: streaming to TIFF and Zarr.

Generation is a pure function of (generator params, frozen normalisation statistics, latent): BatchNorm
uses the statistics stored in the checkpoint, so a volume does not depend on batching or chunking.

- Periodic (circular padding in every layer) along any subset of x, y, z: side exactly u a (u = period
  unit, 16 for the paper), seamless; it equals the central crop of the zero-padded generator applied to
  the latent tiled 3x3x3.
- Non-periodic axes of a generator trained on periodic latents (the default training): the interior only,
  side u (a - 2 h) for a latent of side a (h = `periodic_halo`, the receptive field in latent voxels): each
  voxel is computed from latent values that all exist, so it is a sample of the stationary structure the
  generator learnt, exactly as in the interior of a periodic volume; no voxel sees a zero-padded face, which
  such a generator never saw in training.
- Non-periodic axes of a generator trained on the paper's 1^3 latents (zero padding, `--latent point`,
  imported PyTorch generators): side u (a + 3) (64 + 16 (a - 1) for the paper), faces included, as trained.
- Periodic axes of a generator trained on periodic latents: at least its training latent's side
  (`min_periodic_latent`, `FrozenGenerator.smallest_periodic_side`); smaller tori are refused.
- `size` (`--size N`) centre-crops what a latent gives; `latent_size_for(N)` is the smallest latent that
  gives N voxels.
- Chunked: the generator is local, so a volume is generated tile by tile from latent windows with a halo
  (the backward receptive field of the tile), stitched exactly, and streamed to TIFF slab by slab along
  x; every layer keeps only the part of its output the tile needs (`layer_crops`), so the halo costs
  little; peak memory is set by the tile side and the volume's cross-section, not by its volume.
"""

from porejax.generate.frozen import FrozenGenerator, load_generator
from porejax.generate.plan import (
    DEFAULT_CHUNK,
    ONE_PIECE,
    default_chunk,
    latent_window,
    layer_crops,
    min_periodic_latent,
    output_side,
    parse_periodic,
    periodic_halo,
)

__all__ = [
    "DEFAULT_CHUNK",
    "ONE_PIECE",
    "FrozenGenerator",
    "default_chunk",
    "latent_window",
    "layer_crops",
    "load_generator",
    "min_periodic_latent",
    "output_side",
    "parse_periodic",
    "periodic_halo",
]
