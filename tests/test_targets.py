"""experiments.targets: the issue targets read off a committed compare report agree with its own table."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import targets

CATHODE = Path(__file__).resolve().parents[1] / "experiments" / "results" / "cathode"
REPORT = CATHODE / "report"


# the committed reports of this and of an earlier report version
@pytest.mark.parametrize("folder", [REPORT, CATHODE / "cpu_smooth" / "report"])
def test_the_target_rows_restate_the_report_s_means_and_ratios(folder):
    report = json.loads((folder / "metrics.json").read_text())
    rows = dict(targets.rows(report))
    vf = {row["phase"]: row for row in report["table"] if row["metric"] == "volume_fraction"}
    for name in ("pore", "nmc", "cbd"):
        delta = vf[name]["generated"]["mean"] - vf[name]["real"]["mean"]
        assert f"{name} {delta:+.3f}" in rows["vf gen - real"]
    assert rows["std ratio gen / real, min (max)"].startswith(f"{min(r['std_ratio'] for r in report['table']):.2f}")
    assert rows["seam ratio x / y / z"].split(" / ")[0] == f"{report['seams']['x']['ratio']:.3f}"


def test_tortuosity_is_the_median_of_phase_fraction_over_relative_diffusivity():
    samples = {
        "volume_fraction": np.array([[0.5], [0.4], [0.3]]),
        "relative_diffusivity_xyz": np.array([[[0.25, 0.5, 0.0]], [[0.1, 0.2, 0.0]], [[0.3, 0.3, 0.1]]]),
    }
    tau = targets._median_tau(samples)
    np.testing.assert_allclose(tau[0, :2], [2.0, 1.0])  # x: 2, 4, 1 -> 2; y: 1, 2, 1 -> 1
    assert np.isinf(tau[0, 2])  # two of three volumes have no path along z


def test_the_table_has_one_column_per_report():
    text = targets.table([REPORT, REPORT], ["a", "b"])
    assert text.splitlines()[0] == "| target | a | b |"
    assert all(line.count("|") == 4 for line in text.splitlines())


def test_a_folder_without_a_report_is_one_line_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        targets.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert f"no metrics.json in {tmp_path}" in err and "Traceback" not in err
