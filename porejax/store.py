"""Chunked Zarr stores (version 2, through tensorstore) for label volumes larger than memory.

A store VOL.zarr is a directory: VOL.zarr/.zarray (shape, chunk shape, dtype, blosc compression),
VOL.zarr/.zattrs (porejax's attributes: {"porejax": {"phase_map": ..., "generation": ...}}) and one
file per chunk ("i.j.k"). Every chunk is stored, even one equal to the fill value, so that a store
with a missing chunk is recognisably incomplete: N independent jobs (`porejax generate --part I/N`)
each write whole chunks of their own slab along x, and a reader refuses the store until all are there.
Any Zarr reader (zarr-python, tensorstore, napari) opens the same directory.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorstore as ts

from porejax.errors import PorejaxError

SUFFIX = ".zarr"
ATTRIBUTES = ".zattrs"
_DTYPES = {np.dtype(np.uint8): "|u1", np.dtype(np.uint16): "<u2", np.dtype(np.float32): "<f4"}


def is_store(path: str | os.PathLike) -> bool:
    """True when `path` names a Zarr store (by its .zarr suffix)."""
    return Path(path).suffix.lower() == SUFFIX


def _spec(path: Path) -> dict:
    return {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": str(path.resolve())},
        "store_data_equal_to_fill_value": True,
    }


def create(
    path: str | os.PathLike, shape: Sequence[int], dtype, chunks: Sequence[int], attributes: dict
) -> ts.TensorStore:
    """Open the store at `path` for writing, creating it if absent; an existing one must have this shape,
    dtype and chunk shape (several jobs open one store concurrently). Writes `attributes` (JSON) under
    "porejax" in .zattrs (every job writes the same ones)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise PorejaxError(f"output folder {path.parent} does not exist: create it first")
    dtype = np.dtype(dtype)
    metadata = {
        "shape": [int(s) for s in shape],
        "chunks": [int(c) for c in chunks],
        "dtype": _DTYPES[dtype],
        "compressor": {"id": "blosc", "cname": "zstd", "clevel": 3, "shuffle": 1},
        "fill_value": 0,
    }
    try:
        store = ts.open({**_spec(path), "metadata": metadata}, create=True, open=True).result()
    except ValueError as exc:
        raise PorejaxError(
            f"{path} exists with another shape, dtype or chunk shape than {metadata['shape']}, "
            f"{dtype}, {metadata['chunks']} ({exc}): delete it or write to another path "
            "(all --part jobs of one volume need the same settings)"
        ) from None
    tmp = path / f"{ATTRIBUTES}.{os.getpid()}.partial"
    tmp.write_text(json.dumps({"porejax": attributes}, indent=1))
    os.replace(tmp, path / ATTRIBUTES)
    return store


def write_block(store: ts.TensorStore, start: Sequence[int], block: np.ndarray) -> None:
    """Write `block` at offset `start` (whole chunks, or the partial ones at the array's far edges)."""
    index = tuple(slice(int(s), int(s) + n) for s, n in zip(start, block.shape))
    store[index].write(np.asarray(block)).result()


def attributes(path: str | os.PathLike) -> dict:
    """porejax's attributes of a store ({} when it has none)."""
    file = Path(path) / ATTRIBUTES
    return json.loads(file.read_text()).get("porejax", {}) if file.exists() else {}


class StoreVolume:
    """A Zarr store read lazily: `shape`, `dtype`, `attributes`; `volume[index]` reads only the chunks
    that `index` (slices) touches and returns a numpy array; np.asarray(volume) reads all of it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / ".zarray").is_file():
            raise PorejaxError(
                f"{self.path} is not a Zarr store (no .zarray inside): write one with `porejax generate --out VOL.zarr`"
            )
        try:
            self._store = ts.open(_spec(self.path), open=True).result()
        except ValueError as exc:
            raise PorejaxError(f"cannot open the Zarr store {self.path} ({exc})") from None
        self.shape = tuple(int(s) for s in self._store.shape)
        self.dtype = np.dtype(self._store.dtype.numpy_dtype)
        self.attributes = attributes(self.path)
        self._check_complete()

    def _check_complete(self) -> None:
        chunks = self._store.chunk_layout.read_chunk.shape
        expected = math.prod(-(-n // c) for n, c in zip(self.shape, chunks))
        present = sum(1 for f in os.scandir(self.path) if not f.name.startswith("."))
        if present < expected:
            raise PorejaxError(
                f"{self.path} is incomplete: {present} of its {expected} chunks are written "
                "(a --part job has not finished, or failed: run the missing parts)"
            )

    def __getitem__(self, index) -> np.ndarray:
        return self._store[index].read().result()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)
