"""Volume fraction, face-counting SSA, TPB and two-point correlation: analytic cases and peer references."""

import numpy as np
import pytest
import tifffile

from porejax.errors import PorejaxError
from porejax.metrics import (
    specific_surface_area,
    tpb_edge_count,
    triple_phase_boundary_density,
    two_point_correlation,
    volume_fraction,
)


def _reference_volume(shared_dir, record) -> np.ndarray:
    volume = tifffile.imread(shared_dir / "data" / record["volume"])
    if record["crop"]:
        n = int(record["crop"].split(":")[1].split(",")[0])
        volume = volume[:n, :n, :n]
    return volume


def test_volume_fraction_counts_and_absent_phase():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[:1] = 7
    np.testing.assert_array_equal(volume_fraction(labels, phases=(0, 7, 9)), [0.75, 0.25, 0.0])
    np.testing.assert_array_equal(volume_fraction(labels), [0.75, 0.25])  # default: the labels present, sorted


def test_slab_surface_area_open_and_periodic():
    dx = 0.5
    labels = np.zeros((10, 6, 8), np.uint8)
    labels[0:3] = 1  # slab touching the x = 0 face: one interior interface, a second one across the wrap
    n = labels.size
    open_ = specific_surface_area(labels, dx)
    periodic = specific_surface_area(labels, dx, periodic=True)
    assert open_[1] == pytest.approx(6 * 8 / (n * dx)) and open_[0] == open_[1]
    assert periodic[1] == pytest.approx(2 * 6 * 8 / (n * dx)) and periodic[0] == periodic[1]


def test_tpb_of_diagonal_stripes_is_every_edge_along_x():
    # label (y + z) % 3: the four voxels round an x edge hold y+z, y+z+1, y+z+1, y+z+2 -> all three phases;
    # the four round a y or z edge hold only two values.
    d, h, w = 5, 6, 9
    labels = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 3).astype(np.uint8)
    labels = np.broadcast_to(labels, (d, h, w))
    assert tpb_edge_count(labels) == d * (h - 1) * (w - 1)
    assert tpb_edge_count(labels, periodic=True) == d * h * w
    dx = 0.25
    assert triple_phase_boundary_density(labels, dx) == pytest.approx(d * (h - 1) * (w - 1) / (d * h * w * dx**2))
    with pytest.raises(PorejaxError, match="three phases"):
        tpb_edge_count(labels, phases=(0, 1))


def test_iid_field_s2_is_phi_squared():
    rng = np.random.default_rng(0)
    mask = rng.random((48, 48, 48)) < 0.3
    phi = mask.mean()
    sigma = np.sqrt(phi**2 * (1 - phi**2) / mask.size)
    for axis in (None, 0, 1, 2):
        for periodic in (False, True):
            r, s2 = two_point_correlation(mask, axis=axis, periodic=periodic)
            assert s2[0] == pytest.approx(phi, abs=1e-7)
            assert np.all(np.abs(s2[1:] - phi**2) < 6 * sigma * np.sqrt(2)), (axis, periodic)
    r, _ = two_point_correlation(mask, axis=1, voxel_size=0.5, max_lag=5)
    np.testing.assert_allclose(r, [0, 0.5, 1.0, 1.5, 2.0])


def test_s2_along_axis_of_stripes_is_exact():
    # planes alternating along x: S2 along x at even lags = phi, odd lags = 0; along y it stays phi
    mask = np.zeros((8, 5, 5), bool)
    mask[::2] = True
    _, s2x = two_point_correlation(mask, axis=0, max_lag=6)
    np.testing.assert_allclose(s2x, [0.5, 0, 0.5, 0, 0.5, 0], atol=1e-6)
    _, s2y = two_point_correlation(mask, axis=1)
    np.testing.assert_allclose(s2y, 0.5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "abc"])
def test_bad_voxel_size(bad):
    with pytest.raises(PorejaxError, match="voxel size"):
        specific_surface_area(np.zeros((3, 3, 3), np.uint8), bad)


def test_bad_shapes():
    with pytest.raises(PorejaxError, match="dimensions"):
        volume_fraction(np.zeros((4, 4), np.uint8))
    with pytest.raises(PorejaxError, match="empty"):
        volume_fraction(np.zeros((0, 4, 4), np.uint8))
    with pytest.raises(PorejaxError, match="binary"):
        two_point_correlation(np.full((4, 4, 4), 2))


@pytest.mark.shared_data
def test_counting_metrics_match_peers_on_all_volumes(shared_dir, reference_values):
    for key, record in reference_values["volumes"].items():
        volume = _reference_volume(shared_dir, record)
        dx = record["voxel_size_um"]
        names, labels = zip(*record["labels"].items())
        fractions = volume_fraction(volume, labels)
        ssa = record["specific_surface_area_um-1"]
        open_ = specific_surface_area(volume, dx, labels)
        periodic = specific_surface_area(volume, dx, labels, periodic=True)
        for i, name in enumerate(names):
            assert fractions[i] == pytest.approx(record["volume_fraction"][name], abs=1e-6), key
            assert open_[i] == pytest.approx(ssa["face_counting"][name], rel=1e-4), key
            assert periodic[i] == pytest.approx(ssa["face_counting_periodic"][name], rel=1e-4), key
        assert tpb_edge_count(volume) == record["tpb"]["edge_count"], key
        assert triple_phase_boundary_density(volume, dx) == pytest.approx(record["tpb"]["density_um-2"], rel=1e-4)


@pytest.mark.shared_data
def test_radial_s2_matches_porespy_on_all_volumes(shared_dir, reference_values):
    for key, record in reference_values["volumes"].items():
        volume = _reference_volume(shared_dir, record)
        for name, label in record["labels"].items():
            reference = record["two_point_correlation_radial_porespy"][name]
            r, s2 = two_point_correlation(volume == label, voxel_size=record["voxel_size_um"])
            np.testing.assert_allclose(r, reference["distance_um"], rtol=1e-9, err_msg=key)
            np.testing.assert_allclose(s2, reference["s2"], atol=2e-3, rtol=0, err_msg=f"{key} {name}")
