"""Soft (expected-count) metrics equal the exact counting metrics on one-hot probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from porejax.metrics import (
    specific_surface_area,
    tpb_edge_count,
    triple_phase_boundary_density,
    volume_fraction,
)
from porejax.metrics.soft import (
    soft_specific_surface_area,
    soft_tpb_density,
    soft_tpb_edge_count,
    soft_volume_fraction,
)

DX = 0.390625


def _labels(seed: int, shape=(7, 6, 9), phases: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, phases, shape).astype(np.uint8)


def _one_hot(labels: np.ndarray, phases: int = 4) -> jnp.ndarray:
    return jnp.asarray(labels[..., None] == np.arange(phases), jnp.float32)


@pytest.mark.parametrize("periodic", [False, True])
def test_one_hot_estimators_equal_exact_metrics(periodic):
    batch = np.stack([_labels(s) for s in range(3)])
    p = _one_hot(batch)
    vf = np.asarray(soft_volume_fraction(p))
    ssa = np.asarray(soft_specific_surface_area(p, DX, periodic))
    exact_vf = volume_fraction(batch, phases=range(4))
    exact_ssa = specific_surface_area(batch, DX, phases=range(4), periodic=periodic)
    for b in range(3):
        np.testing.assert_allclose(vf[b], [exact_vf[b][i] for i in range(4)], rtol=1e-6)
        np.testing.assert_allclose(ssa[b], [exact_ssa[b][i] for i in range(4)], rtol=1e-6)
    for phases in [(0, 1, 2), (1, 3, 0)]:
        counts = np.asarray(soft_tpb_edge_count(p, phases, periodic))
        np.testing.assert_array_equal(counts, tpb_edge_count(batch, phases, periodic))
        np.testing.assert_allclose(
            soft_tpb_density(p[0], DX, phases, periodic),
            triple_phase_boundary_density(batch[0], DX, phases, periodic),
            rtol=1e-6,
        )


def test_tpb_expectation_of_one_independent_edge():
    # an open 1 x 2 x 2 volume has one x edge and no others; uniform probabilities over three phases:
    # P(all three among four voxels) = 1 - 3 (2/3)^4 + 3 (1/3)^4 = 36/81
    p = jnp.full((1, 2, 2, 3), 1 / 3)
    assert float(soft_tpb_edge_count(p)) == pytest.approx(36 / 81, rel=1e-6)


def test_surface_area_gradient_is_the_face_expectation_derivative():
    # two voxels along x: expected faces of phase 0 = a (1 - b) + b (1 - a); d/da = 1 - 2 b
    p = jnp.asarray([[[[0.3, 0.7]]], [[[0.8, 0.2]]]])  # (2, 1, 1, 2)
    grad = jax.grad(lambda q: soft_specific_surface_area(q, 1.0)[0])(p)
    assert float(grad[0, 0, 0, 0]) == pytest.approx((1 - 2 * 0.8) / 2, rel=1e-6)
