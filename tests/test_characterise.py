"""`porejax characterise`: the JSON contract, units with and without a voxel size, the table, errors."""

import json
import math

import numpy as np
import pytest
import tifffile

from porejax import metrics
from porejax.cli import main
from porejax.volume import read_voxel_size, write_volume

RECORD_KEYS = {
    "path",
    "shape",
    "voxel_size_um",
    "units",
    "volume_fraction",
    "specific_surface_area",
    "tpb_density",
    "tortuosity",
    "relative_diffusivity",
}


def _volume() -> np.ndarray:
    """(8, 8, 6) labels {0, 128, 255}: 0 and 128 fill halves along y (both span x and z), 255 an island."""
    labels = np.zeros((8, 8, 6), np.uint8)
    labels[:, 4:] = 128
    labels[3:5, 1:3, 2:4] = 255
    return labels


def _run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["characterise", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_json_follows_the_contract_with_the_tiff_voxel_size(tmp_path, capsys):
    labels = _volume()
    path = write_volume(tmp_path / "v.tif", labels, voxel_size=0.5)
    status, out, _ = _run(capsys, path, "--out", tmp_path / "m.json")
    assert status == 0
    text = (tmp_path / "m.json").read_text()
    (record,) = json.loads(text)["volumes"]
    assert set(record) == RECORD_KEYS
    assert record["path"] == str(path) and record["shape"] == [8, 8, 6] and record["voxel_size_um"] == 0.5
    assert record["units"] == {"specific_surface_area": "um^-1", "tpb_density": "um^-2"}
    fractions, surfaces = metrics.volume_fraction(labels), metrics.specific_surface_area(labels, 0.5)
    assert record["volume_fraction"] == pytest.approx(dict(zip(("0", "128", "255"), fractions)))
    assert record["specific_surface_area"] == pytest.approx(dict(zip(("0", "128", "255"), surfaces)))
    assert record["tpb_density"] == pytest.approx(metrics.triple_phase_boundary_density(labels, 0.5))
    assert set(record["tortuosity"]) == {"0", "128", "255"}
    assert record["tortuosity"]["255"] == {"x": math.inf, "y": math.inf, "z": math.inf}
    assert record["relative_diffusivity"]["255"] == {"x": 0.0, "y": 0.0, "z": 0.0}
    assert record["tortuosity"]["0"]["y"] == math.inf  # 0 fills y < 4 only: no path along y
    assert record["tortuosity"]["128"]["x"] == pytest.approx(1.0, rel=1e-3)  # straight slab along x
    assert "Infinity" in text and "NaN" not in text
    header, columns, *rows = out.splitlines()[:5]
    assert "0.5 um" in header and "um^-2" in header and "tau_x" in columns
    assert [row.split()[0] for row in rows] == ["0", "128", "255"]


def test_without_voxel_size_lengths_are_per_voxel_and_units_say_so(tmp_path, capsys):
    labels = _volume()
    np.save(tmp_path / "v.npy", labels)
    status, out, _ = _run(
        capsys, tmp_path / "v.npy", "--metrics", "specific_surface_area", "tpb_density", "--out", tmp_path / "m.json"
    )
    assert status == 0
    (record,) = json.loads((tmp_path / "m.json").read_text())["volumes"]
    assert record["voxel_size_um"] is None
    assert record["units"] == {"specific_surface_area": "voxel^-1", "tpb_density": "voxel^-2"}
    assert set(record) == {"path", "shape", "voxel_size_um", "units", "specific_surface_area", "tpb_density"}
    assert record["specific_surface_area"]["0"] == pytest.approx(metrics.specific_surface_area(labels, 1.0)[0])
    assert "per voxel" in out.splitlines()[0]


def test_voxel_size_flag_overrides_the_tiff_metadata_and_scales_ssa(tmp_path, capsys):
    path = write_volume(tmp_path / "v.tif", _volume(), voxel_size=0.5)
    results = []
    for size in ("0.25", "0.5"):
        assert (
            _run(
                capsys,
                path,
                "--voxel-size",
                size,
                "--metrics",
                "specific_surface_area",
                "--out",
                tmp_path / f"{size}.json",
            )[0]
            == 0
        )
        results.append(json.loads((tmp_path / f"{size}.json").read_text())["volumes"][0])
    assert results[0]["voxel_size_um"] == 0.25
    assert results[0]["specific_surface_area"]["0"] == pytest.approx(2 * results[1]["specific_surface_area"]["0"])


def test_several_volumes_give_one_record_each_in_order(tmp_path, capsys):
    paths = [write_volume(tmp_path / f"v{i}.tif", np.roll(_volume(), i, axis=0)) for i in range(2)]
    assert _run(capsys, *paths, "--metrics", "volume_fraction", "--out", tmp_path / "m.json")[0] == 0
    records = json.loads((tmp_path / "m.json").read_text())["volumes"]
    assert [r["path"] for r in records] == [str(p) for p in paths]


@pytest.mark.parametrize(
    "argv, message",
    [(["--metrics", "porosity"], "unknown metric"), (["--voxel-size", "-1"], "voxel size must be a positive")],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    path = write_volume(tmp_path / "v.tif", _volume())
    status, _, err = _run(capsys, path, *argv)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_voxel_size_is_read_from_imagej_metadata(tmp_path):
    tifffile.imwrite(tmp_path / "ij.tif", _volume(), imagej=True, metadata={"spacing": 0.39, "unit": "micron"})
    tifffile.imwrite(tmp_path / "bare.tif", _volume())
    assert read_voxel_size(tmp_path / "ij.tif") == pytest.approx(0.39)
    assert read_voxel_size(tmp_path / "bare.tif") is None
