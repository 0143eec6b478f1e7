"""porejax.report: KS test against scipy, verdicts on synthetic sets, memorisation check, the written report."""

import json
import math
import re

import numpy as np
import pytest
import scipy.special
import scipy.stats

from porejax import report, synthetic
from porejax.cli import main
from porejax.volume import PhaseMap, write_volume

PHASES = PhaseMap(synthetic.CATHODE_LABELS, ("pore", "nmc", "binder"), 0.390625)
SIDE = 32
RADIUS = 3.0  # fixed particle radius: the same structure at every volume size
# seeds whose 32^3 volumes have every phase spanning x, y and z (D_rel > 0 everywhere; fast solves)
SEEDS_A, SEEDS_B, SEEDS_SHIFTED = range(1, 9), range(13, 21), range(200, 208)


def _cathodes(seeds, fractions=synthetic.CATHODE_FRACTIONS) -> np.ndarray:
    return np.stack([synthetic.cathode(SIDE, seed=s, fractions=fractions, mean_radius=RADIUS) for s in seeds])


# --- Kolmogorov-Smirnov ------------------------------------------------------------------------------------
def test_ks_statistic_and_p_value_match_scipy():
    rng = np.random.default_rng(0)
    for trial in range(40):
        n1, n2 = rng.integers(3, 120, 2)
        a = rng.normal(size=n1)
        b = rng.normal(rng.uniform(0, 1.5), rng.uniform(0.5, 2), size=n2)
        if trial % 4 == 0:  # ties
            a, b = np.round(a), np.round(b)
        ours, ref = report.ks_2samp(a, b), scipy.stats.ks_2samp(a, b)
        assert abs(ours.statistic - ref.statistic) < 1e-12
        assert abs(ours.pvalue - ref.pvalue) < 1e-3


def test_kolmogorov_series_matches_scipy_and_large_samples_use_it():
    for x in np.linspace(0.05, 3, 60):
        assert abs(report.kolmogorov_sf(x) - scipy.special.kolmogorov(x)) < 1e-10
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=report.EXACT_KS_MAX_N + 1), rng.normal(0.03, 1, size=12000)
    ours = report.ks_2samp(a, b)
    en = a.size * b.size / (a.size + b.size)
    assert abs(ours.pvalue - scipy.stats.kstwobign.sf(math.sqrt(en) * ours.statistic)) < 1e-10


def test_compare_values_edge_cases_and_json():
    same = report.compare_values(np.zeros(6), np.zeros(6), n_tests=3)
    assert same["verdict"] == "matches" and same["delta_mean_in_real_std"] == 0 and same["std_ratio"] is None
    shifted = report.compare_values(np.zeros(6), np.full(6, 0.1))
    assert shifted["verdict"] == "differs" and shifted["delta_mean_in_real_std"] == math.inf
    assert report.jsonable(shifted)["delta_mean_in_real_std"] == "inf"
    assert report.jsonable({"a": np.array([np.nan, -np.inf, 1.5])}) == {"a": [None, "-inf", 1.5]}
    collapsed = report.compare_values(np.linspace(0, 1, 20), np.linspace(0.45, 0.55, 20))
    assert collapsed["std_ratio"] == pytest.approx(0.1) and "mode collapse" in collapsed["note"]


# --- verdicts on synthetic sets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_sets():
    """Two independent sets of the same cathode structure and one with shifted volume fractions (8 each)."""
    sets = {"a": _cathodes(SEEDS_A), "b": _cathodes(SEEDS_B),
            "shifted": _cathodes(SEEDS_SHIFTED, fractions=(0.30, 0.55, 0.15))}
    return {k: report.characterise_set(v, PHASES, PHASES.voxel_size) for k, v in sets.items()}


def test_characterise_set_is_consistent(synthetic_sets):
    a = synthetic_sets["a"]
    np.testing.assert_allclose(a.volume_fraction, np.tile(synthetic.CATHODE_FRACTIONS, (8, 1)), atol=1e-4)
    np.testing.assert_allclose(a.s2[..., 0], np.repeat(a.volume_fraction[..., None], 3, axis=2), atol=1e-6)  # S2(0) = phi
    assert a.tpb_density.shape == (8,) and np.all(a.tpb_density > 0)
    assert np.all((a.relative_diffusivity > 0) & (a.relative_diffusivity <= a.volume_fraction[..., None]))


def test_same_structure_matches_on_every_metric(synthetic_sets):
    rows = report.compare_metrics(synthetic_sets["a"], synthetic_sets["b"], PHASES)
    assert len(rows) == 10  # 3 metrics x 3 phases + TPB
    assert [r["verdict"] for r in rows] == ["matches"] * 10, [(r["metric"], r["phase"], r["p_adjusted"],
                                                                 r["delta_mean_in_real_std"]) for r in rows]


def test_shifted_volume_fraction_differs(synthetic_sets):
    rows = report.compare_metrics(synthetic_sets["a"], synthetic_sets["shifted"], PHASES)
    verdicts = {(r["metric"], r["phase"]): r["verdict"] for r in rows}
    assert verdicts[("volume_fraction", "pore")] == "differs"
    assert verdicts[("volume_fraction", "nmc")] == "differs"


def test_s2_band_holds_for_the_same_structure_only(synthetic_sets):
    same = report.s2_band_summary(report.s2_summary(synthetic_sets["a"], synthetic_sets["b"], 1.0), PHASES)
    shifted = report.s2_band_summary(report.s2_summary(synthetic_sets["a"], synthetic_sets["shifted"], 1.0), PHASES)
    assert len(same) == 9 and np.mean([r["fraction_inside"] for r in same]) > 0.85, same
    pore = [r for r in shifted if r["phase"] == "pore"]
    assert all(r["fraction_inside"] < 0.5 and r["max_gap_in_real_std"] > 3 for r in pore), pore


def test_seam_continuity_of_periodic_and_open_volumes():
    periodic = _cathodes(range(30, 46))  # synthetic structures tile seamlessly
    ratios = [v["ratio"] for v in report.seam_continuity(periodic).values()]
    assert all(0.9 < r < 1.1 for r in ratios), ratios  # one seam per volume: sampling noise of a few %
    stripes = np.zeros((4, 16, 16, 16), np.uint8)
    stripes[:, 7::8] = 1  # slices 7 and 15: 3 of 15 interior pairs differ; the seam (15, 0) like pair (7, 8)
    x = report.seam_continuity(stripes, period=8)["x"]
    assert x["ratio"] == pytest.approx(5.0) and x["same_phase_ratio"] == 1.0
    opened = np.stack([synthetic.cathode(2 * SIDE, seed=s, mean_radius=RADIUS)[:SIDE, :SIDE, :SIDE] for s in (1, 2)])
    assert all(v["ratio"] > 2 for v in report.seam_continuity(opened).values()), report.seam_continuity(opened)


# --- memorisation ------------------------------------------------------------------------------------------
def test_memorisation_flags_copies_of_training_crops_only():
    training = synthetic.cathode(96, seed=1, mean_radius=RADIUS)
    reference, positions = report.random_crops(training, 8, SIDE, seed=0)
    copies, _ = report.random_crops(training, 8, SIDE, seed=1)
    copied = report.memorisation_check(copies, reference, training, PHASES, positions)
    assert copied["generated"]["exact_copy_rate"] == 1.0
    assert copied["verdict"] == "memorisation suspected"
    assert copied["baseline"]["exact_copy_rate"] == 0.0 and copied["baseline"]["max"] < 0.9
    novel = report.memorisation_check(_cathodes(range(300, 308)), reference, training, PHASES, positions)
    assert novel["generated"]["exact_copy_rate"] == 0.0
    assert novel["verdict"] == "no sign of memorisation"


def test_nearest_crop_search_is_exhaustive_and_respects_exclusions():
    volume = synthetic.cathode(48, seed=2, mean_radius=RADIUS)
    query = volume[5:21, 9:25, 30:46][None]
    agreement, offset, searched = report.nearest_crop_agreement(query, volume, PHASES)
    assert agreement[0] == pytest.approx(1.0) and offset[0].tolist() == [5, 9, 30] and searched == 1.0
    excluded = report.region_box(((0, 48), (0, 48), (26, 48)), 16)[None, None]  # crops touching z >= 26
    agreement, offset, _ = report.nearest_crop_agreement(query, volume, PHASES, excluded, block_side=24, max_blocks=99)
    brute = max(((volume[x:x + 16, y:y + 16, z:z + 16] == query[0]).mean(), (x, y, z))
                for x in range(33) for y in range(33) for z in range(11))
    assert agreement[0] == pytest.approx(brute[0], abs=1e-6) and tuple(offset[0]) == brute[1]


# --- the report ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A two-phase real volume (pore / solid) and checkpoints with random weights, with and without a voxel
    size (two-phase noise spans the volume, so its diffusion solves are fast)."""
    root = tmp_path_factory.mktemp("compare")
    real = root / "real.tif"
    write_volume(real, (synthetic.cathode(96, seed=5, mean_radius=RADIUS) != 0).astype(np.uint8))
    assert main(["init", "--workdir", str(root / "ckpt"), "--preset", "tiny", "--data", str(real),
                 "--names", "pore,solid", "--voxel-size", "0.390625"]) == 0
    assert main(["init", "--workdir", str(root / "no_voxel"), "--preset", "tiny", "--data", str(real)]) == 0
    write_volume(root / "other_labels.tif", synthetic.cathode(SIDE, seed=0, labels=(0, 128, 255)))
    return root


def _table(markdown: str, first_header: str) -> list[list[str]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_compare_writes_report_whose_table_is_metrics_json(files, capsys):
    out = files / "report"
    results = report.compare(files / "real.tif", files / "ckpt", n=6, size=SIDE, out=out, timing_latent_sides=(1, 2))
    assert "characterise generated: 6/6" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text()) == results
    for name in results["figures"] + ["report.md", "report.html"]:
        assert (out / name).stat().st_size > 1000, name
    assert len(results["figures"]) == 8
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 8 and "<table>" in html
    rows = _table((out / "report.md").read_text(), "metric")
    assert len(rows) == len(results["table"]) == 6  # 3 metrics x 2 phases, no TPB for two phases
    names = [p["name"] for p in results["phases"]]
    keys = {"volume_fraction": "volume_fraction", "specific_surface_area": "specific_surface_area_per_um",
            "relative_diffusivity": "relative_diffusivity_xyz"}
    for cells, row in zip(rows, results["table"]):
        assert cells == [c.replace("|", "\\|") for c in report.table_row(row)]
        for name in ("real", "generated"):
            values = np.asarray(results["samples"][name][keys[row["metric"]]])
            values = values.mean(axis=2) if row["metric"] == "relative_diffusivity" else values
            values = values[:, names.index(row["phase"])]
            assert row[name]["mean"] == pytest.approx(values.mean())
            assert row[name]["std"] == pytest.approx(values.std(ddof=1))
    mem = results["memorisation"]
    assert len(mem["generated"]["nearest_agreement"]) == 6 and mem["searched_fraction_of_training_positions"] == 1.0
    assert results["settings"]["non_overlapping_real_crops"] == 27
    assert len(results["two_point_correlation"]["band"]) == 6 and "seams" not in results


@pytest.mark.parametrize("case, message", [
    ("missing", "file not found"),
    ("labels", "labels [0, 128, 255] but the checkpoint's phases are [0, 1]"),
    ("voxel", "no voxel size"),
])
def test_compare_cli_errors(files, capsys, case, message):
    real = {"missing": files / "nope.tif", "labels": files / "other_labels.tif"}.get(case, files / "real.tif")
    ckpt = files / ("no_voxel" if case == "voxel" else "ckpt")
    assert main(["compare", "--real", str(real), "--checkpoint", str(ckpt), "--n", "4", "--size", "32",
                 "--out", str(files / f"err_{case}")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("porejax compare: error:") and message in err
    assert not (files / f"err_{case}" / "report.md").exists()
