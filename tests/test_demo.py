"""The README's first command, `porejax demo`, end to end with a few training steps."""

import json

import numpy as np

from porejax import cli
from porejax.synthetic import default_dataset
from porejax.volume import read_volume


def test_demo_writes_every_output_and_a_seamless_periodic_volume(tmp_path):
    assert cli.main(["demo", "--out", str(tmp_path), "--steps", "4"]) == 0
    expected = [
        "training_data.tif",
        "generated.tif",
        "generated_periodic.tif",
        "slices.png",
        "checkpoint/porejax.json",
        "report/report.md",
        "report/report.html",
        "report/metrics.json",
    ]
    assert [name for name in expected if not (tmp_path / name).is_file()] == []
    volume, phase_map = default_dataset("cathode", 64, seed=0)
    np.testing.assert_array_equal(read_volume(tmp_path / "training_data.tif"), volume)
    for name in ("generated.tif", "generated_periodic.tif"):
        generated = read_volume(tmp_path / name)
        assert generated.shape == (64, 64, 64) and set(np.unique(generated)) <= set(phase_map.labels)
    periodic = read_volume(tmp_path / "generated_periodic.tif")
    interior = np.mean([np.mean(periodic[i] != periodic[i + 1]) for i in range(63)])
    assert np.mean(periodic[-1] != periodic[0]) < 2 * interior + 0.05  # the wrap is no sharper an edge than inside
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert len(metrics["table"]) == 3 * phase_map.n_phases + 1  # vf, SSA, D_rel per phase + TPB
    log = [json.loads(line) for line in (tmp_path / "checkpoint" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4
