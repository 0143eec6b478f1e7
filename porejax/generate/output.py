"""Writing a generated volume: streamed to TIFF slab by slab, or tile by tile into a Zarr store.

Peak memory is one slab (TIFF) or one tile (Zarr), not the volume; a TIFF is written to a temporary file and
renamed when complete (`TiffStackWriter`), so a failure never leaves a half-written volume.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from porejax import store
from porejax.errors import PorejaxError
from porejax.volume import TiffStackWriter

if TYPE_CHECKING:
    from porejax.generate.frozen import FrozenGenerator


def write(
    g: FrozenGenerator,
    path: str | os.PathLike,
    z,
    periodic: str | Sequence[bool] = "",
    size=None,
    chunk: int | None = None,
    confidence_path: str | os.PathLike | None = None,
    part: tuple[int, int] | None = None,
    attributes: dict | None = None,
) -> tuple[int, ...]:
    """Write the label volume of generator g for latent z (and optionally the confidence map, float32) and
    return its shape; `FrozenGenerator.write` is this function (g its generator).

    Streamed to TIFF slab by slab, or tile by tile into a Zarr store when `path` ends in .zarr (chunks =
    tiles; memory set by one tile). Zarr only: `part` = (i, n) writes only the tiles of slab i of n along x
    (n jobs fill one store, in any order); the store's attributes hold the PhaseMap, the generator's step
    and `attributes` (e.g. seed, periodic axes, size); the confidence map then goes to a store too.
    """
    _, plans, chunk = g.layout(z, periodic, size, chunk)
    shape = tuple(p.size for p in plans)
    if store.is_store(path):
        if confidence_path is not None and not store.is_store(confidence_path):
            raise PorejaxError(
                f"with a Zarr store --out the confidence map goes to a store too: name it *.zarr, not {confidence_path}"
            )
        meta = {"phase_map": g.phase_map.to_dict(), "generation": {"step": g.step, **(attributes or {})}}
        chunks = tuple(min(chunk, n) for n in shape)
        _fill_stores(g, [path, confidence_path], shape, chunks, meta, g.tiles(z, periodic, size, chunk, part))
    elif part is not None:
        raise PorejaxError(
            f"--part needs a Zarr store (--out VOL.zarr), not {path}: parts of one TIFF cannot be written independently"
        )
    else:
        _stream_tiffs(g, [path, confidence_path], shape, g.slabs(z, periodic, size, chunk))
    return shape


def _stream_tiffs(g: FrozenGenerator, paths: list, shape: tuple, slabs: Iterator) -> None:
    """Stream (labels, confidence) slabs into the TIFFs `paths` (labels first; None: not written)."""
    dtypes = (g.phase_map.label_dtype, np.float32)
    writers = [(i, TiffStackWriter(p, shape, dtypes[i], g.phase_map.voxel_size)) for i, p in enumerate(paths) if p]
    with contextlib.ExitStack() as stack:
        for _, writer in writers:
            stack.enter_context(writer)
        for slab in slabs:
            for i, writer in writers:
                writer.write(slab[i])


def _fill_stores(g: FrozenGenerator, paths: list, shape: tuple, chunks: tuple, meta: dict, tiles: Iterator) -> None:
    """Write (start, labels, confidence) tiles into new Zarr stores `paths` (labels first; None: not written)."""
    dtypes = (g.phase_map.label_dtype, np.float32)
    outputs = [(i, store.create(p, shape, dtypes[i], chunks, meta)) for i, p in enumerate(paths) if p]
    for start, *blocks in tiles:
        for i, out in outputs:
            store.write_block(out, start, blocks[i])
