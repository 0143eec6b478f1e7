"""Crop sampling: shapes, one-hot, exact slices, strided epochs, holdout, augmentation, validation."""

import functools

import jax
import numpy as np
import pytest

from porejax import dataset, synthetic
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap

PHASES = PhaseMap((0, 85, 170))


def _volume(shape=(40, 48, 32), seed=0) -> np.ndarray:
    return synthetic.cathode(shape, seed=seed)


def _sampler(volumes, crop=16, batch=6, **kw):
    stack, shapes = dataset.prepare(volumes, PHASES, crop)
    spec = dataset.CropSpec(crop, batch, PHASES.n_phases, shapes, **kw)
    arrays = dataset.device_arrays(stack, spec)
    sample = jax.jit(functools.partial(dataset.sample_batch, arrays, spec))
    origins = jax.jit(functools.partial(dataset.crop_origins, arrays, spec))
    return spec, sample, origins


def test_crops_are_one_hot_slices_of_the_volumes():
    volumes = [_volume(), _volume((24, 20, 30), seed=1)]
    spec, sample, origins = _sampler(volumes)
    key, data_key = jax.random.PRNGKey(3), jax.random.PRNGKey(4)
    x = np.asarray(sample(key, data_key, 0))
    assert x.shape == (6, 16, 16, 16, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x.sum(-1), 1.0)
    o = np.asarray(origins(jax.random.split(key)[0], data_key, 0))
    labels = np.asarray(PHASES.labels)[x.argmax(-1)]
    for crop, (v, i, j, k) in zip(labels, o):
        np.testing.assert_array_equal(crop, volumes[v][i : i + 16, j : j + 16, k : k + 16])  # inside its own volume


def test_random_origins_cover_every_position_of_every_volume():
    volumes = [(np.indices((18, 17, 16)).sum(0) % 2 * 85).astype(np.uint8), _volume((16, 16, 16))]
    spec, _, origins = _sampler(volumes, batch=64)
    seen = np.concatenate([np.asarray(origins(jax.random.PRNGKey(i), jax.random.PRNGKey(0), 0)) for i in range(40)])
    assert {tuple(o) for o in seen} == {(0, i, j, 0) for i in range(3) for j in range(2)} | {(1, 0, 0, 0)}
    # volumes are drawn in proportion to their number of positions: 6 vs 1
    assert np.mean(seen[:, 0] == 0) == pytest.approx(6 / 7, abs=0.03)


def test_strided_epochs_visit_every_grid_position_once():
    volumes = [_volume(), _volume((24, 24, 24), seed=1)]
    spec, _, origins = _sampler(volumes, batch=8, mode="strided", stride=8)
    grid = dataset.strided_origins(spec.shapes, 16, 8)
    assert len(grid) == sum(spec.positions) == 4 * 5 * 3 + 2 * 2 * 2
    per_epoch = len(grid) // 8
    key, data_key = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    epoch = np.concatenate([np.asarray(origins(key, data_key, i)) for i in range(per_epoch)])
    assert len({tuple(o) for o in epoch}) == per_epoch * 8  # no repeats within an epoch
    assert {tuple(o) for o in epoch} <= {tuple(o) for o in grid}
    next_epoch = np.asarray(origins(key, data_key, per_epoch))
    assert not np.array_equal(next_epoch, epoch[:8])  # a new order every epoch


def test_holdout_region_never_appears_in_training_crops():
    volume = _volume((48, 24, 24))
    volume[volume == 170] = 0
    volume[-16:] = 170  # the held-out slices are the only binder
    train, holdout = dataset.split_holdout(volume, 16, axis=0)
    assert train.shape == (32, 24, 24) and holdout.shape == (16, 24, 24) and np.all(holdout == 170)
    _, sample, _ = _sampler([train], batch=32)
    for i in range(20):
        assert np.asarray(sample(jax.random.PRNGKey(i), jax.random.PRNGKey(0), i))[..., 2].sum() == 0


def test_augmentation_is_a_cube_symmetry_and_preserves_phase_fractions():
    volume = _volume()
    _, plain, _ = _sampler([volume], batch=16)
    _, augmented, _ = _sampler([volume], batch=16, augment=True)
    key, data_key = jax.random.PRNGKey(5), jax.random.PRNGKey(0)
    a, b = np.asarray(plain(key, data_key, 0)), np.asarray(augmented(key, data_key, 0))
    np.testing.assert_array_equal(a.sum(axis=(1, 2, 3)), b.sum(axis=(1, 2, 3)))  # same crops, same fractions
    assert not np.array_equal(a, b)
    for x, y in zip(a, b):  # each augmented crop is one of the 48 symmetries of its plain crop
        images = [
            np.flip(np.transpose(x, p + (3,)), [ax for ax in range(3) if f >> ax & 1])
            if f
            else np.transpose(x, p + (3,))
            for p in __import__("itertools").permutations(range(3))
            for f in range(8)
        ]
        assert any(np.array_equal(y, im) for im in images)


def test_volume_smaller_than_the_crop_is_refused_with_the_fix():
    with pytest.raises(PorejaxError, match="smaller than the model's 32\\^3 crop: use a larger volume"):
        dataset.prepare([_volume((24, 40, 40))], PHASES, 32)


def test_holdout_larger_than_the_volume_is_refused():
    with pytest.raises(PorejaxError, match="cannot hold out 40"):
        dataset.split_holdout(_volume(), 40)
