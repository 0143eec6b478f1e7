"""Volumes: round trips keep bytes and label values; every bad input gives a one-line error; atomic writes."""

import os

import numpy as np
import pytest
import tifffile

from porejax.cli import main
from porejax.errors import PorejaxError
from porejax.volume import (
    PhaseMap,
    TiffStackWriter,
    decode,
    one_hot,
    read_volume,
    to_indices,
    validate_volume,
    write_volume,
)


def _labels(shape=(12, 10, 8), values=(0, 128, 255), seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).choice(np.asarray(values, dtype), size=shape)


def test_tiff_round_trip_keeps_bytes_and_labels(tmp_path):
    volume = _labels()
    tifffile.imwrite(tmp_path / "in.tif", volume)
    read = read_volume(tmp_path / "in.tif")
    phase_map = PhaseMap.from_volume(read, names=("pore", "ni", "ysz"), voxel_size=0.065)
    assert phase_map.labels == (0, 128, 255) and phase_map.n_phases == 3
    encoded = one_hot(read, phase_map)
    assert encoded.shape == (12, 10, 8, 3) and encoded.dtype == np.float32
    assert np.array_equal(encoded.sum(-1), np.ones((12, 10, 8)))
    decoded = decode(encoded, phase_map)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, volume)
    write_volume(tmp_path / "out.tif", decoded)
    assert np.array_equal(tifffile.imread(tmp_path / "out.tif"), volume)
    write_volume(tmp_path / "again.tif", read_volume(tmp_path / "out.tif"))
    assert (tmp_path / "again.tif").read_bytes() == (tmp_path / "out.tif").read_bytes()


def test_uint16_and_npy(tmp_path):
    volume = _labels(values=(3, 1000, 40000), dtype=np.uint16)
    np.save(tmp_path / "v.npy", volume)
    read = read_volume(tmp_path / "v.npy")
    phase_map = PhaseMap.from_volume(read)
    assert read.dtype == np.uint16 and phase_map.label_dtype == np.uint16
    assert np.array_equal(decode(one_hot(read, phase_map), phase_map), volume)
    assert np.array_equal(to_indices(read, phase_map), np.searchsorted([3, 1000, 40000], volume))
    assert PhaseMap.from_dict(PhaseMap((1, 2), ("a", "b"), 0.5).to_dict()) == PhaseMap((1, 2), ("a", "b"), 0.5)


def test_integer_valued_floats_are_accepted():
    assert validate_volume(_labels().astype(np.float32)).dtype == np.uint8


@pytest.mark.parametrize(
    "volume,message",
    [
        (np.zeros((4, 4), np.uint8), "2 dimensions"),
        (np.zeros((2, 4, 4, 4), np.uint8), "4 dimensions"),
        (np.full((4, 4, 4), 0.5, np.float32), "non-integer"),
        (np.where(np.eye(4, dtype=bool)[None].repeat(4, 0), np.nan, 1.0), "NaN"),
        (np.ones((4, 4, 4), np.uint8), "single phase"),
        (np.arange(64, dtype=np.uint8).reshape(4, 4, 4), "more than the 8 phases allowed"),
        (np.full((4, 4, 4), -1, np.int16), "outside 0..65535"),
    ],
)
def test_bad_volumes_are_refused(volume, message):
    with pytest.raises(PorejaxError, match=message):
        validate_volume(volume)


def test_volume_smaller_than_crop_and_phase_limit():
    with pytest.raises(PorejaxError, match=r"smaller than the 64\^3 training crops.*--preset"):
        validate_volume(_labels(), min_size=64)
    assert len(np.unique(validate_volume(_labels(values=tuple(range(10))), max_phases=10))) == 10


def test_bad_files(tmp_path):
    with pytest.raises(PorejaxError, match="file not found"):
        read_volume(tmp_path / "missing.tif")
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(PorejaxError, match="cannot read"):
        read_volume(tmp_path / "junk.tif")
    (tmp_path / "v.raw").write_bytes(b"\0" * 8)
    with pytest.raises(PorejaxError, match="unsupported file type"):
        read_volume(tmp_path / "v.raw")


def test_labels_outside_the_phase_map():
    with pytest.raises(PorejaxError, match=r"labels \[7\] that are not in the PhaseMap"):
        to_indices(np.array([[[0, 7]]]), PhaseMap((0, 128)))


def test_failed_writes_leave_no_file(tmp_path):
    target = tmp_path / "out.tif"
    with pytest.raises(PorejaxError, match="only 2 of 5 slices"):
        with TiffStackWriter(target, (5, 4, 4), np.uint8) as writer:
            writer.write(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(RuntimeError):
        with TiffStackWriter(target, (5, 4, 4), np.uint8) as writer:
            writer.write(np.zeros((2, 4, 4), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((16, 16), np.uint8))
    assert main(["init", "--workdir", str(tmp_path / "ck"), "--data", str(tmp_path / "flat.tif")]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 dimensions" in err and len(err.splitlines()) == 1
    assert main(["init", "--workdir", str(tmp_path / "ck"), "--data", str(tmp_path / "nope.tif")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def test_cli_synth_init_info(tmp_path, capsys):
    assert main(["synth", "anode", "--size", "32", "--seed", "1", "--out", str(tmp_path / "a.tif")]) == 0
    assert set(np.unique(tifffile.imread(tmp_path / "a.tif"))) == {0, 128, 255}
    assert (
        main(["init", "--workdir", str(tmp_path / "ck"), "--data", str(tmp_path / "a.tif"), "--voxel-size", "0.065"])
        == 0
    )
    capsys.readouterr()
    assert main(["info", "--checkpoint", str(tmp_path / "ck")]) == 0
    info = capsys.readouterr().out
    assert '"generator": 116288' in info and '"labels": [\n      0,\n      128,\n      255' in info
    assert main(["init", "--workdir", str(tmp_path / "ck"), "--labels", "0,1"]) == 2
    assert (
        main(["synth", "cathode", "--size", "16", "--fractions", "0.5,0.6,0.1", "--out", str(tmp_path / "c.tif")]) == 2
    )
    assert not (tmp_path / "c.tif").exists()


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_volume(tmp_path / "v.tif", np.zeros((2, 3, 4), np.uint8))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
