"""Input checks shared by the metric wrappers: batching, voxel size, phase selection, and the single-volume rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from porejax.errors import PorejaxError


def as_batch(volume, what: str = "volume") -> tuple[np.ndarray, bool]:
    """(D, H, W) or (B, D, H, W) array-like -> ((B, D, H, W) numpy array, was_batched)."""
    arr = np.asarray(volume)
    if arr.ndim not in (3, 4):
        raise PorejaxError(
            f"{what} has {arr.ndim} dimensions {arr.shape}, expected (D, H, W) or a batch "
            "(B, D, H, W): squeeze or select axes to get 3D volumes"
        )
    if arr.size == 0:
        raise PorejaxError(f"{what} is empty (shape {arr.shape}): pass a volume with at least one voxel per axis")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise PorejaxError(f"{what} contains NaN or infinite values: pass integer phase labels or a 0/1 mask")
    if arr.dtype.kind not in "biuf":
        raise PorejaxError(f"{what} has dtype {arr.dtype}: pass integer phase labels or a boolean mask")
    return (arr if arr.ndim == 4 else arr[None]), arr.ndim == 4


def single_or_batch(value, batched: bool):
    """The one rule for results: per-volume arrays lead with the batch axis (B, ...); for a single (D, H, W)
    input that axis is dropped (a (B,) array becomes a numpy scalar, (B, P) becomes (P,)). None stays None."""
    return value if batched or value is None else value[0]


def device_labels(batch: np.ndarray, labels: Sequence[int]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(B, D, H, W) labels and the label values of interest as device arrays of one dtype. 64-bit labels
    become int32 (JAX's default width), replaced by their rank among the volume's values if out of range."""
    labels = np.asarray(labels)
    if batch.dtype.itemsize > 4:
        info = np.iinfo(np.int32)
        if batch.min() < info.min or batch.max() > info.max:
            values, ranks = np.unique(batch, return_inverse=True)
            batch, labels = ranks.reshape(batch.shape), np.searchsorted(values, labels)
        batch, labels = batch.astype(np.int32), labels.astype(np.int32)
    return jnp.asarray(batch), jnp.asarray(labels, batch.dtype)


def as_mask_batch(mask, what: str = "mask") -> tuple[np.ndarray, bool]:
    """A binary (0/1 or bool) volume or batch -> ((B, D, H, W) bool, was_batched); anything else is an error."""
    arr, batched = as_batch(mask, what)
    if arr.dtype != bool:
        values = np.unique(arr)
        if not np.all(np.isin(values, (0, 1))):
            raise PorejaxError(
                f"{what} must be binary (0/1 or bool), got values {values[:5].tolist()}: "
                "pass `labels == label` for the phase of interest"
            )
        arr = arr.astype(bool)
    return arr, batched


def check_voxel_size(voxel_size) -> float:
    """Positive finite voxel edge length in micrometres, or a PorejaxError."""
    try:
        size = float(voxel_size)
    except (TypeError, ValueError):
        raise PorejaxError(f"voxel size must be a positive number of micrometres, got {voxel_size!r}") from None
    if not math.isfinite(size) or size <= 0:
        raise PorejaxError(f"voxel size must be a positive number of micrometres, got {voxel_size!r}")
    return size


def phase_labels(batch: np.ndarray, phases: Sequence[int] | None) -> tuple[int, ...]:
    """The phase labels to report: `phases` as given (absent ones allowed), else the labels present."""
    if phases is None:
        return tuple(int(v) for v in np.unique(batch))
    labels = tuple(int(v) for v in phases)
    if not labels or len(set(labels)) != len(labels):
        raise PorejaxError(f"phases must be distinct label values, got {list(phases)}: e.g. phases=(0, 128, 255)")
    return labels


def check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise PorejaxError(f"axis must be 0, 1 or 2 (x, y, z), got {axis!r}")
    return int(axis)
