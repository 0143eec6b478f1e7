"""What users generate is the material in every voxel: with the committed cathode generator (trained on
periodic latents), phase fractions of non-periodic volumes do not depend on the distance from the nearest
face, for the smallest size, 64^3 and 128^3, through the Python API and `porejax generate`'s defaults."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

import porejax
from porejax.cli import main
from porejax.metrics.position import face_distance, face_profile

CATHODE = Path(__file__).resolve().parents[1] / "experiments" / "results" / "cathode" / "checkpoint"
REAL_FRACTIONS = (0.453, 0.401, 0.146)  # held-out region of the real cathode (pore, NMC, CBD)


@pytest.fixture(scope="module")
def cathode() -> porejax.FrozenGenerator:
    return porejax.load_generator(CATHODE)


def _volumes(g, size: int, count: int, seed: int, periodic: str = "") -> np.ndarray:
    shape = g.latent_size_for(size, periodic)
    return g.labels(np.stack([g.latent(seed + i, shape) for i in range(count)]), periodic, size=size)


@pytest.fixture(scope="module")
def stationary(cathode):
    """Mean phase fractions and their standard error from periodic 64^3 volumes (no faces at all)."""
    volumes = _volumes(cathode, 64, 16, seed=1000, periodic="xyz")
    per_volume = np.stack([(volumes == label).mean(axis=(1, 2, 3)) for label in cathode.phase_map.labels], -1)
    return per_volume.mean(0), per_volume.std(0, ddof=1) / np.sqrt(len(per_volume))


def test_face_distance_counts_layers_from_the_nearest_face():
    d = face_distance((5, 4, 7))
    assert d[0, 2, 3] == 0 and d[2, 1, 3] == 1 and d[2, 2, 3] == 1 and d.max() == 1
    assert face_distance((9, 9, 9))[4, 4, 4] == 4
    assert face_distance((9, 9, 9), axes=(0,))[4, 0, 0] == 4
    profile = face_profile(np.zeros((2, 8, 8, 8), np.uint8), band=2, phases=(0, 1))
    assert profile.fractions.shape == (2, 2, 2) and np.all(profile.fractions[..., 0] == 1)


@pytest.mark.parametrize("size, count, band", [(8, 48, 2), (64, 16, 4), (128, 3, 8)])
def test_no_face_band_in_non_periodic_volumes(cathode, stationary, size, count, band):
    volumes = _volumes(cathode, size, count, seed=size)
    assert volumes.shape == (count, size, size, size)
    profile = face_profile(volumes, band=band, phases=cathode.phase_map.labels)
    mean = profile.fractions.mean(0)  # (bands, phases)
    se = profile.fractions.std(0, ddof=1) / np.sqrt(count)
    ref, ref_se = stationary
    allowed = 4 * np.sqrt(se**2 + ref_se**2) + 0.01
    assert np.all(np.abs(mean - ref) <= allowed), (
        f"face bands {profile.band_start.tolist()}: fractions {np.round(mean, 3).tolist()} vs interior "
        f"{np.round(ref, 3).tolist()} (allowed {np.round(allowed, 3).tolist()})"
    )


def test_generate_default_command_writes_the_material(tmp_path, capsys):
    out = tmp_path / "g.tif"
    assert (
        main(
            ["generate", "--checkpoint", str(CATHODE), "--size", "64", "--seed", "7", "--count", "4", "--out", str(out)]
        )
        == 0
    )
    volumes = np.stack([tifffile.imread(tmp_path / f"g_{i}.tif") for i in range(4)])
    assert volumes.shape == (4, 64, 64, 64)
    fractions = [float((volumes == label).mean()) for label in (0, 85, 170)]
    np.testing.assert_allclose(fractions, REAL_FRACTIONS, atol=0.06)
    outer = face_profile(volumes, band=8).fractions[:, 0].mean(0)  # the outer 8 voxels: as the whole
    np.testing.assert_allclose(outer, fractions, atol=0.05)
