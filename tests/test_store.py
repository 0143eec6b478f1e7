"""Zarr stores: generation tile by tile into a store, --part jobs, the lazy reader, read_volume."""

import numpy as np
import pytest
import tifffile

from porejax import checkpoint, store
from porejax.cli import main
from porejax.errors import PorejaxError
from porejax.volume import read_volume
from smooth_generator import smooth_generator


@pytest.fixture(scope="module")
def gen():
    return smooth_generator()


@pytest.fixture(scope="module")
def workdir(gen, tmp_path_factory):
    path = tmp_path_factory.mktemp("ck")
    checkpoint.write_metadata(path, gen.config, gen.phase_map)
    checkpoint.save(path, 0, gen.variables)
    return path


def test_parts_fill_one_store_with_the_bytes_of_one_tiff(workdir, tmp_path, capsys):
    """Two --part jobs (out of order) write the same bytes as a one-shot TIFF; the store carries the
    PhaseMap and the settings; a store with a part missing is refused as incomplete."""
    common = [
        "generate",
        "--checkpoint",
        str(workdir),
        "--size",
        "40",
        "--periodic",
        "xz",
        "--seed",
        "5",
        "--chunk",
        "20",
    ]
    assert main(common + ["--out", str(tmp_path / "one.tif")]) == 0
    expected = tifffile.imread(tmp_path / "one.tif")
    out = tmp_path / "v.zarr"
    assert main(common + ["--out", str(out), "--part", "2/2"]) == 0
    with pytest.raises(PorejaxError, match="incomplete: 4 of its 8 chunks"):
        read_volume(out)
    assert main(common + ["--out", str(out), "--part", "1/2"]) == 0
    assert np.array_equal(read_volume(out), expected)
    lazy = store.StoreVolume(out)
    assert lazy.shape == (40, 40, 40) and lazy.dtype == np.uint8
    assert np.array_equal(lazy[13:29, :, 7:9], expected[13:29, :, 7:9])
    assert lazy.attributes["phase_map"]["labels"] == [0, 128, 255]
    assert lazy.attributes["generation"] == {
        "step": 0,
        "seed": 5,
        "periodic": "xz",
        "size": 40,
        "latent_size": [5, 2, 5],
    }
    capsys.readouterr()
    assert main(common + ["--out", str(tmp_path / "x.zarr"), "--part", "1/3"]) == 2
    assert "1 <= I <= N <= 2" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "x.tif"), "--part", "1/2"]) == 2
    assert "--part needs a Zarr store" in capsys.readouterr().err
    assert main(common[:-1] + ["24", "--out", str(out), "--part", "1/2"]) == 2
    assert "another shape, dtype or chunk shape" in capsys.readouterr().err


def test_store_with_confidence_equals_in_memory_generation(gen, tmp_path):
    z = gen.latent(seed=1, size=2)
    labels, confidence = gen.generate(z, size=(30, 33, 36), chunk=20)
    shape = gen.write(tmp_path / "l.zarr", z, size=(30, 33, 36), chunk=20, confidence_path=tmp_path / "c.zarr")
    assert shape == (30, 33, 36)
    assert np.array_equal(read_volume(tmp_path / "l.zarr"), labels)
    assert np.array_equal(np.asarray(store.StoreVolume(tmp_path / "c.zarr")), confidence)
    with pytest.raises(PorejaxError, match="goes to a store too"):
        gen.write(tmp_path / "m.zarr", z, chunk=20, confidence_path=tmp_path / "c.tif")
    with pytest.raises(PorejaxError, match="not a Zarr store"):
        store.StoreVolume(tmp_path)


@pytest.mark.parametrize("periodic", [False, True])
def test_slab_by_slab_metrics_of_a_store_equal_the_in_memory_metrics(tmp_path, periodic):
    from porejax import metrics, synthetic
    from porejax.metrics.slabs import morphology_by_slabs, s2_by_slabs

    volume = synthetic.cathode(30, seed=2)[:, :27, :22]
    labels = tuple(int(v) for v in np.unique(volume))
    out = store.create(tmp_path / "c.zarr", volume.shape, volume.dtype, (8, 16, 16), {})
    store.write_block(out, (0, 0, 0), volume)
    got = morphology_by_slabs(store.StoreVolume(tmp_path / "c.zarr"), 0.4, labels, periodic, slab=7)
    np.testing.assert_array_equal(got.volume_fraction, metrics.volume_fraction(volume, labels))
    np.testing.assert_array_equal(
        got.specific_surface_area, metrics.specific_surface_area(volume, 0.4, labels, periodic)
    )
    assert got.tpb_density == metrics.triple_phase_boundary_density(volume, 0.4, labels, periodic)
    assert got.tpb_density > 0 and got.labels == labels and got.tortuosity is None
    for axis in range(3):
        for label in labels[:2]:
            expected = metrics.two_point_correlation(volume == label, axis=axis, periodic=periodic)
            r, s2 = s2_by_slabs(store.StoreVolume(tmp_path / "c.zarr"), label, axis, periodic, 7)
            assert np.array_equal(r, expected.r) and np.array_equal(s2, expected.s2)
