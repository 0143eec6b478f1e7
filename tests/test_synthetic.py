"""Procedural structures: exact fractions, labels, determinism, binder placement, percolation, periodicity."""

import numpy as np
import pytest
from scipy import ndimage

from porejax import PorejaxError, synthetic
from porejax.volume import PhaseMap, validate_volume

SIZE = 64


@pytest.fixture(scope="module")
def volumes():
    return {"cathode": synthetic.cathode(SIZE), "anode": synthetic.anode(SIZE)}


def _fractions(volume, labels):
    return np.array([np.mean(volume == label) for label in labels])


def _spans(mask, axis):
    """True when one face-connected component of `mask` touches both faces normal to `axis`."""
    components, _ = ndimage.label(mask)
    first, last = np.take(components, 0, axis=axis), np.take(components, -1, axis=axis)
    return bool(np.intersect1d(first[first > 0], last[last > 0]).size)


@pytest.mark.parametrize(
    "kind, labels, fractions",
    [
        ("cathode", synthetic.CATHODE_LABELS, synthetic.CATHODE_FRACTIONS),
        ("anode", synthetic.ANODE_LABELS, synthetic.ANODE_FRACTIONS),
    ],
)
def test_default_fractions_labels_and_validity(volumes, kind, labels, fractions):
    volume = volumes[kind]
    assert volume.shape == (SIZE,) * 3 and volume.dtype == np.uint8
    assert sorted(np.unique(volume).tolist()) == sorted(labels)
    np.testing.assert_allclose(_fractions(volume, labels), fractions, atol=0.01)
    assert validate_volume(volume) is not None


@pytest.mark.parametrize("generator", [synthetic.cathode, synthetic.anode])
def test_custom_fractions_labels_and_shape(generator):
    fractions, labels = (0.3, 0.2, 0.5), (7, 3, 200)
    volume = generator((40, 32, 48), seed=3, fractions=fractions, labels=labels)
    assert volume.shape == (40, 32, 48)
    assert sorted(np.unique(volume).tolist()) == sorted(labels)
    np.testing.assert_allclose(_fractions(volume, labels), fractions, atol=0.01)


@pytest.mark.parametrize("generator", [synthetic.cathode, synthetic.anode])
def test_deterministic_per_seed(generator):
    a, b, c = generator(32, seed=5), generator(32, seed=5), generator(32, seed=6)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_binder_sits_on_active_particles(volumes):
    volume = volumes["cathode"]
    pore, active, binder = (volume == label for label in synthetic.CATHODE_LABELS)
    touches_active = ndimage.binary_dilation(active)
    binder_contact = np.mean(touches_active[binder])
    pore_contact = np.mean(touches_active[pore])
    assert binder_contact > 0.5 and binder_contact > 4 * pore_contact
    surface = active & ndimage.binary_dilation(~active)
    assert np.mean(ndimage.binary_dilation(pore)[surface]) > 0.1, "some active surface must face pore"


def test_anode_phases_percolate_in_every_axis(volumes):
    volume = volumes["anode"]
    for label in synthetic.ANODE_LABELS:
        for axis in range(3):
            assert _spans(volume == label, axis), f"phase {label} does not span axis {axis}"


@pytest.mark.parametrize("kind", ["cathode", "anode"])
def test_periodic_wrap(volumes, kind):
    volume = volumes[kind]
    for axis in range(3):
        slices = np.moveaxis(volume, axis, 0)
        interior = np.mean(slices[1:] != slices[:-1])
        assert np.mean(slices[0] != slices[-1]) < 2 * interior


@pytest.mark.parametrize(
    "kind, names, voxel_size",
    [
        ("cathode", ("pore", "nmc", "binder"), 0.390625),
        ("anode", ("pore", "ni", "ysz"), 0.065),
    ],
)
def test_default_dataset(kind, names, voxel_size):
    volume, phase_map = synthetic.default_dataset(kind, size=32, seed=1)
    assert isinstance(phase_map, PhaseMap)
    assert phase_map.names == names and phase_map.voxel_size == voxel_size
    assert PhaseMap.from_volume(volume).labels == phase_map.labels


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fractions": (0.5, 0.5)}, "3 entries"),
        ({"fractions": (0.5, 0.4, 0.2)}, "sum to 1"),
        ({"fractions": (0.0, 0.5, 0.5)}, "between 0 and 1"),
        ({"fractions": "abc"}, "3 numbers"),
        ({"labels": (0, 1, 1)}, "distinct"),
        ({"labels": (0, 1, 300)}, "0..255"),
        ({"size": 7}, "at least 8"),
        ({"size": (16, 16)}, "three integers"),
        ({"size": 16.0}, "three integers"),
        ({"seed": -1}, "non-negative"),
    ],
)
@pytest.mark.parametrize("generator", [synthetic.cathode, synthetic.anode])
def test_argument_errors(generator, kwargs, match):
    kwargs = {"size": 16, **kwargs}
    with pytest.raises(PorejaxError, match=match):
        generator(**kwargs)


def test_shape_parameter_errors():
    with pytest.raises(PorejaxError, match="mean_radius"):
        synthetic.cathode(16, mean_radius=0.5)
    with pytest.raises(PorejaxError, match="correlation_length"):
        synthetic.anode(16, correlation_length=-1.0)


def test_unknown_dataset_kind():
    with pytest.raises(PorejaxError, match="cathode, anode"):
        synthetic.default_dataset("separator")
