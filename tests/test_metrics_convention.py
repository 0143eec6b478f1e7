"""The metrics' one result convention: batch-first arrays, a single volume without the batch axis, named
fields with phases and axes as array axes, and plain calls on numpy arrays."""

import math

import numpy as np
import pytest

from porejax import metrics
from porejax.metrics.position import face_profile

LABELS = (0, 100, 200)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """(2, 10, 9, 8) labels {0, 100, 200}: a slab of 100 along x spans x and z, the rest random."""
    rng = np.random.default_rng(3)
    volumes = rng.choice(np.array(LABELS, np.uint8), (2, 10, 9, 8), p=(0.5, 0.2, 0.3))
    volumes[:, :, :3] = 100
    return volumes


@pytest.mark.parametrize(
    "metric",
    [
        lambda v: metrics.volume_fraction(v, LABELS),
        lambda v: metrics.specific_surface_area(v, 0.5, LABELS, periodic=True),
        lambda v: metrics.tpb_edge_count(v, LABELS),
        lambda v: metrics.triple_phase_boundary_density(v, 0.5, LABELS),
        lambda v: metrics.two_point_correlation(v == 0, axis=1).s2,
        lambda v: face_profile(v, band=2, phases=LABELS).fractions,
    ],
)
def test_a_batch_of_two_is_the_two_single_results_stacked(batch, metric):
    together = metric(batch)
    singles = [metric(v) for v in batch]
    assert together.shape == (2, *np.shape(singles[0]))
    np.testing.assert_allclose(together, np.stack(singles), rtol=1e-6, atol=1e-7)


def test_a_batch_of_two_solves_is_the_two_single_solves_stacked(batch):
    together = metrics.tortuosity(batch, axis=2, phase=100)
    singles = [metrics.tortuosity(v, axis=2, phase=100) for v in batch]
    assert together._fields == ("tau", "relative_diffusivity", "iterations", "converged", "concentration", "flux")
    assert together.tau.shape == together.relative_diffusivity.shape == together.converged.shape == (2,)
    np.testing.assert_allclose(together.tau, [s.tau for s in singles], rtol=2e-4)
    np.testing.assert_allclose(together.relative_diffusivity, [s.relative_diffusivity for s in singles], rtol=2e-4)
    np.testing.assert_allclose(together.tau, together.relative_diffusivity**-1 * (batch == 100).mean((1, 2, 3)))


def test_characterisation_fields_have_phases_and_axes_as_array_axes(batch):
    together = metrics.characterise(batch, 0.5)
    assert together.labels == LABELS and together.voxel_size_um == 0.5
    assert together.volume_fraction.shape == together.specific_surface_area.shape == (2, 3)
    assert together.tpb_density.shape == (2,)
    assert together.tortuosity.shape == together.relative_diffusivity.shape == (2, 3, 3)
    # S2 along x, y, z at the lags of the shortest axis (8 voxels: 4 lags), in um
    assert together.tpcf.shape == (2, 3, 3, 4) and together.tpcf_lag_um.tolist() == [0.0, 0.5, 1.0, 1.5]
    np.testing.assert_allclose(together.tpcf[..., 0], np.repeat(together.volume_fraction[..., None], 3, -1), atol=1e-6)
    for b, volume in enumerate(batch):
        single = metrics.characterise(volume, 0.5)
        assert single.volume_fraction.shape == (3,) and single.tortuosity.shape == (3, 3)
        for field in ("volume_fraction", "specific_surface_area", "tpb_density", "tpcf"):
            np.testing.assert_allclose(getattr(together, field)[b], getattr(single, field), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(together.relative_diffusivity[b], single.relative_diffusivity, rtol=2e-4)
        # phase 100 (index 1) along x (axis 0): the slab of 100 spans it, so the solve is the direct one
        assert single.tortuosity[1, 0] == pytest.approx(metrics.tortuosity(volume, 0, phase=100).tau, rel=1e-6)


def test_slices_and_concatenation_of_characterisations_are_per_volume(batch):
    from porejax.metrics.characterise import concatenate, take_volumes

    whole = metrics.characterise(batch, 0.5, tortuosity=False)
    parts = [take_volumes(whole, slice(0, 1)), take_volumes(whole, slice(1, 2))]
    again = concatenate(parts)
    assert again.tortuosity is None and again.labels == whole.labels
    np.testing.assert_array_equal(again.tpcf, whole.tpcf)
    np.testing.assert_array_equal(again.tpcf_lag_um, whole.tpcf_lag_um)


def test_plain_calls_on_a_numpy_volume_give_numbers_and_arrays():
    labels = np.zeros((12, 6, 6), np.uint8)
    labels[:, :2] = 255  # a straight slab of 255 along x: tau = 1
    fractions = metrics.volume_fraction(labels)
    assert isinstance(fractions, np.ndarray) and fractions.tolist() == [2 / 3, 1 / 3]
    result = metrics.tortuosity(labels, axis=0, phase=255)
    assert isinstance(result.tau, float) and result.tau == pytest.approx(1.0, rel=1e-4)
    assert isinstance(result.relative_diffusivity, float) and result.relative_diffusivity == pytest.approx(1 / 3)
    assert metrics.tortuosity(labels, axis=1, phase=255).tau == math.inf
    assert metrics.tortuosity(labels, axis=0, phase=7).tau == math.inf  # an absent phase conducts nothing
    assert isinstance(metrics.triple_phase_boundary_density(labels, 0.5, phases=(0, 255, 7)), float)
    r, s2 = metrics.two_point_correlation(labels == 255, axis=0)
    assert r.shape == s2.shape == (6,) and s2[0] == pytest.approx(1 / 3)
