"""Label volumes: reading, validation, the PhaseMap, one-hot encoding and decoding, atomic writing.

Array axes 0, 1, 2 of a volume are called x, y, z (the TauFactor / PoreSpy convention).
Labels keep their meaning: a volume read with values {0, 128, 255} is written back with {0, 128, 255}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

from porejax.errors import PorejaxError

DEFAULT_MAX_PHASES = 8
_BIGTIFF_BYTES = 2**31  # classic TIFF offsets are 32-bit; switch to BigTIFF well before 4 GiB


@dataclasses.dataclass(frozen=True)
class PhaseMap:
    """Sorted label values <-> phase indices 0..n-1, optional names, voxel edge length in micrometres."""

    labels: tuple[int, ...]
    names: tuple[str, ...] | None = None
    voxel_size: float | None = None

    def __post_init__(self):
        labels = tuple(int(v) for v in self.labels)
        if len(labels) < 2:
            raise PorejaxError(f"a PhaseMap needs at least two phases, got labels {labels}")
        if list(labels) != sorted(set(labels)):
            raise PorejaxError(f"PhaseMap labels must be distinct and sorted, got {labels}")
        if min(labels) < 0 or max(labels) > 65535:
            raise PorejaxError(f"PhaseMap labels must lie in 0..65535 (uint8/uint16), got {labels}")
        object.__setattr__(self, "labels", labels)
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(names) != len(labels):
                raise PorejaxError(f"{len(names)} phase names given for {len(labels)} labels {labels}")
            object.__setattr__(self, "names", names)
        if self.voxel_size is not None:
            size = float(self.voxel_size)
            if not np.isfinite(size) or size <= 0:
                raise PorejaxError(f"voxel size must be a positive number of micrometres, got {self.voxel_size}")
            object.__setattr__(self, "voxel_size", size)

    @property
    def n_phases(self) -> int:
        return len(self.labels)

    @property
    def label_dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if max(self.labels) <= 255 else np.dtype(np.uint16)

    def name(self, index: int) -> str:
        """Readable name of phase `index` (its label value when no names were given)."""
        return self.names[index] if self.names else str(self.labels[index])

    def to_dict(self) -> dict:
        return {
            "labels": list(self.labels),
            "names": None if self.names is None else list(self.names),
            "voxel_size_um": self.voxel_size,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PhaseMap:
        return cls(
            tuple(data["labels"]),
            None if data.get("names") is None else tuple(data["names"]),
            data.get("voxel_size_um"),
        )

    @classmethod
    def from_volume(
        cls,
        volume: np.ndarray,
        names: Sequence[str] | None = None,
        voxel_size: float | None = None,
        max_phases: int = DEFAULT_MAX_PHASES,
    ) -> PhaseMap:
        """The PhaseMap of a validated label volume (labels discovered from its values)."""
        labels = np.unique(validate_volume(volume, max_phases=max_phases))
        return cls(tuple(int(v) for v in labels), None if names is None else tuple(names), voxel_size)


def validate_volume(
    volume, max_phases: int = DEFAULT_MAX_PHASES, min_size: int | None = None, what: str = "volume"
) -> np.ndarray:
    """Check that `volume` is a usable 3D label volume and return it as an unsigned integer array.

    Raises PorejaxError (one line, with the fix) for: not 3D, non-integer floats, NaN or infinity,
    negative or too large values, a single phase, more than `max_phases` phases, or a side shorter than
    `min_size` voxels.
    """
    arr = np.asarray(volume)
    if arr.ndim in (3, 4) and arr.shape[-1] in (3, 4) and min(arr.shape[-3:-1]) >= 16:
        raise PorejaxError(
            f"{what} of shape {arr.shape} looks like an RGB image (last axis {arr.shape[-1]}: "
            "colour channels): segment it into labels first (one integer phase label per voxel)"
        )
    if arr.ndim != 3:
        hint = (
            "a 2D image; porejax needs a 3D stack of slices (or train from 2D images: --slices)"
            if arr.ndim == 2
            else "squeeze or select the channel/time axis to get a single 3D label volume"
        )
        raise PorejaxError(f"{what} has {arr.ndim} dimensions {arr.shape}, expected 3 (x, y, z): {hint}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise PorejaxError(f"{what} contains NaN or infinite values: segment it into integer labels first")
        if not np.all(arr == np.round(arr)):
            raise PorejaxError(
                f"{what} has non-integer float values (dtype {arr.dtype}): it looks like a "
                "greyscale image; segment it into integer phase labels first"
            )
    elif arr.dtype.kind not in "iu":
        raise PorejaxError(f"{what} has dtype {arr.dtype}; expected integer phase labels (uint8 or uint16)")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise PorejaxError(
            f"{what} has label values outside 0..65535 ({arr.min()}..{arr.max()}): "
            "relabel the phases as small non-negative integers"
        )
    if min_size is not None and min(arr.shape) < min_size:
        raise PorejaxError(
            f"{what} of shape {arr.shape} is smaller than the {min_size}^3 training crops: use a "
            f"volume of at least {min_size} voxels along every axis, or a --preset with smaller "
            "crops (`porejax train --help` lists them)"
        )
    labels = np.unique(arr)
    if labels.size < 2:
        raise PorejaxError(
            f"{what} contains a single phase (label {labels[0] if labels.size else 'none'}): "
            "a microstructure needs at least two phases"
        )
    if labels.size > max_phases:
        raise PorejaxError(
            f"{what} has {labels.size} distinct labels, more than the {max_phases} phases allowed: "
            f"is it a greyscale image? Segment it into at most {max_phases} phase labels, or merge "
            "phases (from Python, read_volume(..., max_phases=N) raises the limit)"
        )
    dtype = np.uint8 if labels.max() <= 255 else np.uint16
    return arr.astype(dtype, copy=False)


def read_array(path: str | os.PathLike) -> np.ndarray:
    """The array stored in a TIFF (.tif/.tiff), NumPy (.npy) file or Zarr store (.zarr, read whole;
    `porejax.store.StoreVolume` reads one lazily), unvalidated."""
    path = Path(path)
    if not path.exists():
        raise PorejaxError(f"file not found: {path} (check the path; volumes are .tif, .tiff, .npy or .zarr)")
    suffix = path.suffix.lower()
    if path.is_dir() and suffix != ".zarr":
        raise PorejaxError(f"{path} is a directory, expected a .tif, .tiff or .npy label volume or a .zarr store")
    try:
        if suffix == ".zarr":
            from porejax.store import StoreVolume

            return np.asarray(StoreVolume(path))
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                if tif.pages and tif.pages[0].photometric == tifffile.PHOTOMETRIC.RGB:
                    raise PorejaxError(
                        f"{path} is an RGB image (TIFF photometric RGB, {tif.pages[0].samplesperpixel} "
                        "samples per pixel): segment it into labels first"
                    )
                return tif.asarray()
        raise PorejaxError(f"unsupported file type '{suffix}' for {path}: use a .tif, .tiff, .npy or .zarr volume")
    except PorejaxError:
        raise
    except Exception as exc:  # tifffile / numpy raise many types for corrupt files
        raise PorejaxError(
            f"cannot read {path} ({type(exc).__name__}: {exc}): is it a valid "
            f"{'NumPy' if suffix == '.npy' else 'TIFF'} file?"
        ) from None


def read_volume(
    path: str | os.PathLike, max_phases: int = DEFAULT_MAX_PHASES, min_size: int | None = None
) -> np.ndarray:
    """Read and validate a label volume from a TIFF stack (.tif/.tiff), a NumPy file (.npy) or a Zarr store."""
    return validate_volume(read_array(path), max_phases=max_phases, min_size=min_size, what=str(path))


def to_indices(volume: np.ndarray, phase_map: PhaseMap) -> np.ndarray:
    """Label volume (D, H, W) -> phase-index volume (D, H, W) uint8, via the PhaseMap's sorted labels."""
    volume = np.asarray(volume)
    lut_labels = np.asarray(phase_map.labels)
    indices = np.searchsorted(lut_labels, volume)
    bad = (indices >= len(lut_labels)) | (lut_labels[np.minimum(indices, len(lut_labels) - 1)] != volume)
    if bad.any():
        unknown = sorted(set(np.unique(volume[bad]).tolist()))[:5]
        raise PorejaxError(
            f"volume has labels {unknown} that are not in the PhaseMap {phase_map.labels}: "
            "use a volume segmented with the same labels as the training data"
        )
    return indices.astype(np.uint8)


def one_hot(volume: np.ndarray, phase_map: PhaseMap, dtype=np.float32) -> np.ndarray:
    """Label volume (D, H, W) -> one-hot (D, H, W, n_phases), channels last."""
    indices = to_indices(volume, phase_map)
    return (indices[..., None] == np.arange(phase_map.n_phases, dtype=np.uint8)).astype(dtype)


def decode(probabilities, phase_map: PhaseMap) -> np.ndarray:
    """Probabilities or one-hot (..., n_phases) -> label volume (...) with the ORIGINAL label values."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[-1] != phase_map.n_phases:
        raise PorejaxError(
            f"last axis has {probabilities.shape[-1]} channels but the PhaseMap has {phase_map.n_phases} phases"
        )
    lut = np.asarray(phase_map.labels, dtype=phase_map.label_dtype)
    return lut[np.argmax(probabilities, axis=-1)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    An error (or an interrupt) never leaves a partial file under the final name, nor the temporary one.
    An OSError of the block (a full disk, a read-only folder) is raised again naming `path`, not the
    temporary name. The file gets the usual permissions of a new file (0666 minus the umask), not the
    private ones of a temporary file.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise PorejaxError(f"output folder {path.parent} does not exist: create it first")
    if path.is_dir():
        raise PorejaxError(f"output {path} is a directory: give a file name")
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_volume(path: str | os.PathLike, volume: np.ndarray, voxel_size: float | None = None) -> Path:
    """Write a 3D volume atomically as a TIFF stack (BigTIFF when large) or .npy, by the file suffix."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise PorejaxError(f"can only write 3D volumes, got shape {volume.shape}")
    path = Path(path)
    if path.suffix.lower() == ".npy":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, volume)
        return path
    with TiffStackWriter(path, volume.shape, volume.dtype, voxel_size=voxel_size) as writer:
        writer.write(volume)
    return path


class TiffStackWriter:
    """Stream a 3D volume into a TIFF stack slab by slab along axis 0, without holding it in memory.

    Use as a context manager; `write(slab)` appends slabs of shape (d, H, W). The file appears under its
    final name only when all `shape[0]` slices were written and the block exited without error.
    BigTIFF is used when the volume exceeds 2 GiB.
    """

    def __init__(self, path: str | os.PathLike, shape: Sequence[int], dtype, voxel_size: float | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".tif", ".tiff"):
            raise PorejaxError(f"output {self.path} must end in .tif or .tiff")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.metadata = {"axes": "ZYX"}
        if voxel_size:
            self.metadata["spacing_um"] = float(voxel_size)
        self.written = 0

    def __enter__(self) -> TiffStackWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        bigtiff = int(np.prod(self.shape)) * self.dtype.itemsize >= _BIGTIFF_BYTES
        self._tif = tifffile.TiffWriter(tmp, bigtiff=bigtiff)
        return self

    def write(self, slab: np.ndarray) -> None:
        slab = np.asarray(slab, dtype=self.dtype)
        if slab.ndim != 3 or slab.shape[1:] != self.shape[1:] or self.written + len(slab) > self.shape[0]:
            raise PorejaxError(
                f"slab of shape {slab.shape} does not fit a volume of shape {self.shape} after {self.written} slices"
            )
        for page in slab:
            self._tif.write(page, contiguous=True, photometric="minisblack", metadata=self.metadata)
        self.written += len(slab)

    def __exit__(self, exc_type, exc, tb):
        try:
            self._tif.close()
            if exc is None and self.written != self.shape[0]:
                raise PorejaxError(f"only {self.written} of {self.shape[0]} slices were written to {self.path}")
        except BaseException as error:  # a close that failed (a full disk) or missing slices
            exc = exc if exc is not None else error
        if exc is None:
            return self._atomic.__exit__(None, None, None)
        try:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)  # removes the partial file, re-raises
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            size_mb = int(np.prod(self.shape)) * self.dtype.itemsize / 2**20
            raise PorejaxError(
                f"no space left on device writing {self.path}: it needs {size_mb:.1f} MB; free that "
                "much there or write it to another folder"
            ) from None
        raise exc


_UNIT_UM = {"um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3}


def read_voxel_size(path: str | os.PathLike) -> float | None:
    """The voxel edge length in micrometres recorded in a TIFF's metadata, or None when it records none.

    Read from porejax's own metadata (`spacing_um`, written by `write_volume`) or ImageJ's (`spacing` with
    a length `unit`); .npy files carry no voxel size.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            shaped = tif.shaped_metadata or ({},)
            imagej = tif.imagej_metadata or {}
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise PorejaxError(f"cannot read {path} ({type(exc).__name__}: {exc}): is it a valid TIFF file?") from None
    if shaped[0].get("spacing_um"):
        return float(shaped[0]["spacing_um"])
    scale = _UNIT_UM.get(str(imagej.get("unit", "")).strip().lower())
    if imagej.get("spacing") and scale is not None:
        return float(imagej["spacing"]) * scale
    return None
