"""porejax.compare: statistics and verdicts on synthetic sets, memorisation check, the written compare."""

import json
import math
import re

import numpy as np
import pytest

from porejax import compare, jsonio, synthetic
from porejax.cli import main
from porejax.compare.document import table_row
from porejax.errors import PorejaxError
from porejax.volume import PhaseMap, write_volume

PHASES = PhaseMap(synthetic.CATHODE_LABELS, ("pore", "nmc", "binder"), 0.390625)
SIDE = 32
RADIUS = 3.0  # fixed particle radius: the same structure at every volume size
# seeds whose 32^3 volumes have every phase spanning x, y and z (D_rel > 0 everywhere; fast solves)
SEEDS_A, SEEDS_B, SEEDS_SHIFTED = range(1, 9), range(13, 21), range(200, 208)


def _cathodes(seeds, fractions=synthetic.CATHODE_FRACTIONS) -> np.ndarray:
    return np.stack([synthetic.cathode(SIDE, seed=s, fractions=fractions, mean_radius=RADIUS) for s in seeds])


# --- Kolmogorov-Smirnov ------------------------------------------------------------------------------------
def test_ks_test_separates_shifted_samples_and_rejects_empty_or_non_finite_ones():
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    same = compare.ks_2samp(a, a)
    assert same.statistic == 0 and same.pvalue == pytest.approx(1.0)
    assert compare.ks_2samp(a, a + 3).pvalue < 1e-6
    for bad in ([], [1.0, math.nan]):
        with pytest.raises(PorejaxError, match="non-empty samples of finite values"):
            compare.ks_2samp(a, bad)


def test_compare_values_edge_cases_and_json():
    same = compare.compare_values(np.zeros(6), np.zeros(6), n_tests=3)
    assert same["verdict"] == "matches" and same["delta_mean_in_real_std"] == 0 and same["std_ratio"] is None
    shifted = compare.compare_values(np.zeros(6), np.full(6, 0.1))
    assert shifted["verdict"] == "differs" and shifted["delta_mean_in_real_std"] == math.inf
    assert jsonio.jsonable(shifted)["delta_mean_in_real_std"] == math.inf
    assert jsonio.jsonable({"a": np.array([np.nan, -np.inf, 1.5])}) == {"a": [None, -math.inf, 1.5]}
    assert json.loads(jsonio.dumps({"a": np.array([np.nan, -np.inf])})) == {"a": [None, -math.inf]}
    collapsed = compare.compare_values(np.linspace(0, 1, 20), np.linspace(0.45, 0.55, 20))
    assert collapsed["std_ratio"] == pytest.approx(0.1) and "mode collapse" in collapsed["note"]


# --- verdicts on synthetic sets ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_sets():
    """Two independent sets of the same cathode structure and one with shifted volume fractions (8 each)."""
    sets = {
        "a": _cathodes(SEEDS_A),
        "b": _cathodes(SEEDS_B),
        "shifted": _cathodes(SEEDS_SHIFTED, fractions=(0.30, 0.55, 0.15)),
    }
    return {k: compare.characterise_set(v, PHASES, PHASES.voxel_size) for k, v in sets.items()}


def test_characterise_set_is_consistent(synthetic_sets):
    a = synthetic_sets["a"]
    np.testing.assert_allclose(a.volume_fraction, np.tile(synthetic.CATHODE_FRACTIONS, (8, 1)), atol=1e-4)
    np.testing.assert_allclose(
        a.tpcf[..., 0], np.repeat(a.volume_fraction[..., None], 3, axis=2), atol=1e-6
    )  # S2(0) = phi
    assert a.tpb_density.shape == (8,) and np.all(a.tpb_density > 0)
    assert np.all((a.relative_diffusivity > 0) & (a.relative_diffusivity <= a.volume_fraction[..., None]))


def test_same_structure_matches_on_every_metric(synthetic_sets):
    rows = compare.compare_metrics(synthetic_sets["a"], synthetic_sets["b"], PHASES)
    assert len(rows) == 10  # 3 metrics x 3 phases + TPB
    assert [r["verdict"] for r in rows] == ["matches"] * 10, [
        (r["metric"], r["phase"], r["p_adjusted"], r["delta_mean_in_real_std"]) for r in rows
    ]


def test_shifted_volume_fraction_differs(synthetic_sets):
    rows = compare.compare_metrics(synthetic_sets["a"], synthetic_sets["shifted"], PHASES)
    verdicts = {(r["metric"], r["phase"]): r["verdict"] for r in rows}
    assert verdicts[("volume_fraction", "pore")] == "differs"
    assert verdicts[("volume_fraction", "nmc")] == "differs"


def test_s2_band_holds_for_the_same_structure_only(synthetic_sets):
    same = compare.s2_band_summary(compare.s2_summary(synthetic_sets["a"], synthetic_sets["b"]), PHASES)
    shifted = compare.s2_band_summary(compare.s2_summary(synthetic_sets["a"], synthetic_sets["shifted"]), PHASES)
    assert len(same) == 9 and np.mean([r["fraction_inside"] for r in same]) > 0.85, same
    pore = [r for r in shifted if r["phase"] == "pore"]
    assert all(r["fraction_inside"] < 0.5 and r["max_gap_in_real_std"] > 3 for r in pore), pore


def test_face_bands_flag_a_generator_whose_faces_differ(synthetic_sets):
    from porejax.compare.statistics import face_band_summary

    real, same = _cathodes(SEEDS_A), _cathodes(SEEDS_B)
    assert face_band_summary(real, same, PHASES)["deviating_bands"] == 0
    banded = same.copy()
    for axis in (1, 2, 3):  # the outer two layers at every face all NMC, as zero-padded faces gave
        np.moveaxis(banded, axis, 1)[:, [0, 1, -2, -1]] = synthetic.CATHODE_LABELS[1]
    summary = face_band_summary(real, banded, PHASES)
    assert summary["deviating_bands"] >= 1 and summary["generated_mean"][0][1] > 0.5


def test_seam_continuity_of_periodic_and_open_volumes():
    periodic = _cathodes(range(30, 46))  # synthetic structures tile seamlessly
    ratios = [v["ratio"] for v in compare.seam_continuity(periodic).values()]
    assert all(0.9 < r < 1.1 for r in ratios), ratios  # one seam per volume: sampling noise of a few %
    stripes = np.zeros((4, 16, 16, 16), np.uint8)
    stripes[:, 7::8] = 1  # slices 7 and 15: 3 of 15 interior pairs differ; the seam (15, 0) like pair (7, 8)
    x = compare.seam_continuity(stripes, period=8)["x"]
    assert x["ratio"] == pytest.approx(5.0) and x["same_phase_ratio"] == 1.0
    opened = np.stack([synthetic.cathode(2 * SIDE, seed=s, mean_radius=RADIUS)[:SIDE, :SIDE, :SIDE] for s in (1, 2)])
    assert all(v["ratio"] > 2 for v in compare.seam_continuity(opened).values()), compare.seam_continuity(opened)


# --- memorisation ------------------------------------------------------------------------------------------
def test_memorisation_flags_copies_of_training_crops_only():
    training = synthetic.cathode(96, seed=1, mean_radius=RADIUS)
    reference, _, positions = compare.random_crops([training], compare.MIN_BASELINE_CROPS, SIDE, seed=0)
    copies = compare.random_crops([training], 8, SIDE, seed=1).crops
    copied = compare.memorisation_check(copies, reference, [training], PHASES, positions)
    assert copied["generated"]["exact_copy_rate"] == 1.0
    assert copied["verdict"] == "memorisation suspected"
    assert copied["baseline"]["exact_copy_rate"] == 0.0 and copied["baseline"]["max"] < 0.9
    novel = compare.memorisation_check(_cathodes(range(300, 308)), reference, [training], PHASES, positions)
    assert novel["generated"]["exact_copy_rate"] == 0.0
    assert novel["verdict"] == "no sign of memorisation"
    few = compare.memorisation_check(_cathodes(range(300, 308)), reference[:8], [training], PHASES, positions[:8])
    assert few["verdict"] == "too few real crops to judge"
    few_copies = compare.memorisation_check(copies, reference[:8], [training], PHASES, positions[:8])
    assert few_copies["verdict"] == "memorisation suspected"  # an exact copy needs no baseline


def test_nearest_crop_search_is_exhaustive_and_respects_exclusions():
    volume = synthetic.cathode(48, seed=2, mean_radius=RADIUS)
    query = volume[5:21, 9:25, 30:46][None]
    agreement, offset, searched = compare.nearest_crop_agreement(query, volume, PHASES)
    assert agreement[0] == pytest.approx(1.0) and offset[0].tolist() == [5, 9, 30] and searched == 1.0
    excluded = compare.region_box(((0, 48), (0, 48), (26, 48)), 16)[None, None]  # crops touching z >= 26
    agreement, offset, _ = compare.nearest_crop_agreement(query, volume, PHASES, excluded, block_side=24, max_blocks=99)
    brute = max(
        ((volume[x : x + 16, y : y + 16, z : z + 16] == query[0]).mean(), (x, y, z))
        for x in range(33)
        for y in range(33)
        for z in range(11)
    )
    assert agreement[0] == pytest.approx(brute[0], abs=1e-6) and tuple(offset[0]) == brute[1]


def test_memorisation_searches_every_training_volume_and_excludes_own_crops_only():
    volumes = [synthetic.cathode(40, seed=s, mean_radius=RADIUS) for s in (3, 4)]
    size = 16
    generated = np.stack([volumes[1][2:18, 5:21, 7:23], volumes[0][20:36, 1:17, 0:16]])
    reference = np.stack([volumes[0][3:19, 3:19, 3:19], volumes[1][10:26, 0:16, 20:36]])
    positions = np.array([[3, 3, 3], [10, 0, 20]])
    result = compare.memorisation_check(generated, reference, volumes, PHASES, positions, [0, 1], max_blocks=99)
    gen = result["generated"]
    assert gen["nearest_agreement"] == pytest.approx([1.0, 1.0]) and gen["exact_copy_rate"] == 1.0
    assert gen["nearest_volume"].tolist() == [1, 0] and gen["nearest_offset"].tolist() == [[2, 5, 7], [20, 1, 0]]
    assert result["searched_fraction_of_training_positions"] == 1.0
    base = result["baseline"]
    assert np.all(base["nearest_agreement"] < 0.9)  # a crop's own overlapping crops are excluded in its volume
    for i, (volume, offset) in enumerate(zip(base["nearest_volume"], base["nearest_offset"])):
        assert volume != i or np.any(np.abs(offset - positions[i]) >= size)  # reference i lies in volume i
    foreign = compare.memorisation_check(generated, reference, volumes, PHASES, positions, [-1, -1], max_blocks=99)
    assert foreign["baseline"]["nearest_agreement"] == pytest.approx([1.0, 1.0])  # -1: in no searched volume


# --- the real set ----------------------------------------------------------------------------------------
def test_random_crops_of_one_volume_are_the_previous_sampler():
    volume = synthetic.cathode(48, seed=6, mean_radius=RADIUS)
    for seed, region in ((0, None), (3, ((0, 48), (4, 40), (10, 48)))):
        bounds = region or ((0, 48),) * 3
        rng = np.random.default_rng(seed)  # the sampler before several volumes were supported
        expected = np.stack([rng.integers(start, stop - 16 + 1, 20) for start, stop in bounds], axis=1)
        crops, sources, positions = compare.random_crops([volume], 20, 16, seed, [region])
        assert positions.tolist() == expected.tolist() and sources.tolist() == [0] * 20
        np.testing.assert_array_equal(crops, [volume[x : x + 16, y : y + 16, z : z + 16] for x, y, z in expected])


def test_random_crops_spread_over_volumes_without_repeats():
    base = synthetic.cathode(48, seed=7, mean_radius=RADIUS)
    volumes = [base[:16, :16, :16], base[16:32, :16, :16], base[:17, 20:37, 30:47]]  # 1, 1 and 8 positions
    crops, sources, positions = compare.random_crops(volumes, 6, 16, seed=2)
    assert sources.tolist() == [0, 1, 2, 2, 2, 2]  # crop i from volume i mod 3 until 0 and 1 are used up
    for crop, v, (x, y, z) in zip(crops, sources, positions):
        np.testing.assert_array_equal(crop, volumes[v][x : x + 16, y : y + 16, z : z + 16])
    every = compare.random_crops(volumes, 50, 16, seed=2)
    assert len(every.crops) == 10 == sum(compare.crop_positions(((0, s),) * 3, 16) for s in (16, 16, 17))
    assert sorted(map(tuple, every.positions[every.volumes == 2])) == [
        (x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)
    ]
    held_out = ((0, 20), (0, 20), (2, 20))  # 5 x 5 x 3 = 75 positions; 60 draws repeat some: redrawn distinct
    crops, _, positions = compare.random_crops([base], 60, 16, seed=0, regions=[held_out])
    assert len(np.unique(positions, axis=0)) == 60 and positions.min(axis=0).tolist() >= [0, 0, 2]
    assert positions.max(axis=0).tolist() <= [4, 4, 4]
    text = compare.real_set_text(["a", "b", "c"], every, 50, [((0, s),) * 3 for s in (16, 16, 17)], 16)
    assert text == (
        "10 crops from 3 volumes (1 from a, 1 from b, 8 from c); 50 were asked for, but the sampled "
        "regions hold only 10 distinct crop positions of side 16"
    )


def test_real_sources_and_memorisation_targets_follow_the_training_fingerprints():
    a, b = (synthetic.cathode(32, seed=s, mean_radius=RADIUS) for s in (8, 9))
    trained = {
        "data": {
            "volumes": [{"sha256": compare.volume_sha256(a)}],
            "holdout": {"axis": "x", "slices": 12, "regions": [[20, 32]]},
        }
    }
    sources = [compare.real_source(trained, v) for v in (a, b)]
    assert sources[0].sample_region == sources[0].holdout == ((20, 32), (0, 32), (0, 32))
    assert sources[0].is_training_data and sources[1].is_training_data is False and sources[1].holdout is None
    searched, text = compare.memorisation_targets(["a.tif", "b.tif"], sources)
    assert searched == [0] and "(`a.tif`, outside the held-out regions)" in text
    assert "the other 1 real volume is not training data and not searched" in text
    searched, text = compare.memorisation_targets(["b.tif", "c.tif"], [sources[1]] * 2)
    assert searched == [0, 1] and "none of them is the checkpoint's training data" in text
    searched, text = compare.memorisation_targets(["b.tif"], [compare.real_source({}, b)])
    assert searched == [0] and "the checkpoint records no training data" in text and "similarity to it," in text


# --- the report ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A two-phase real volume (pore / solid) and checkpoints with random weights, with and without a voxel
    size (two-phase noise spans the volume, so its diffusion solves are fast)."""
    root = tmp_path_factory.mktemp("compare")
    real = root / "real.tif"
    write_volume(real, (synthetic.cathode(96, seed=5, mean_radius=RADIUS) != 0).astype(np.uint8))
    assert (
        main(
            [
                "init",
                "--workdir",
                str(root / "ckpt"),
                "--preset",
                "tiny",
                "--data",
                str(real),
                "--names",
                "pore,solid",
                "--voxel-size",
                "0.390625",
            ]
        )
        == 0
    )
    assert main(["init", "--workdir", str(root / "no_voxel"), "--preset", "tiny", "--data", str(real)]) == 0
    write_volume(root / "other_labels.tif", synthetic.cathode(SIDE, seed=0, labels=(0, 128, 255)))
    other = (synthetic.cathode(64, seed=6, mean_radius=RADIUS) != 0).astype(np.uint8)
    for name, part in (
        ("a", other[:32, :32, :32]),
        ("b", other[30:63, 30:63, 30:63]),
        ("c", other[32:, :32, 32:]),
        ("small", other[:16, :16, :16]),
    ):  # 1, 8, 1 and 0 crop positions of side 32
        write_volume(root / f"{name}.tif", part)
    return root


def _table(markdown: str, first_header: str) -> list[list[str]]:
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_compare_writes_report_whose_table_is_metrics_json(files, capsys):
    out = files / "report"
    results = compare.compare(files / "real.tif", files / "ckpt", n=6, size=SIDE, out=out, timing_latent_sides=(1, 2))
    assert "characterise generated: 6/6" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text()) == results
    for name in results["figures"] + ["report.md", "report.html"]:
        assert (out / name).stat().st_size > 1000, name
    assert len(results["figures"]) == 9
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 9 and "<table>" in html
    assert "by distance from the nearest face" in (out / "report.md").read_text()
    assert len(results["face_bands"]["band_start"]) == SIDE // 2 // 4
    rows = _table((out / "report.md").read_text(), "metric")
    assert len(rows) == len(results["table"]) == 6  # 3 metrics x 2 phases, no TPB for two phases
    names = [p["name"] for p in results["phases"]]
    keys = {
        "volume_fraction": "volume_fraction",
        "specific_surface_area": "specific_surface_area",
        "relative_diffusivity": "relative_diffusivity_xyz",
    }
    for cells, row in zip(rows, results["table"]):
        assert cells == [c.replace("|", "\\|") for c in table_row(row)]
        for name in ("real", "generated"):
            values = np.asarray(results["samples"][name][keys[row["metric"]]])
            values = values.mean(axis=2) if row["metric"] == "relative_diffusivity" else values
            values = values[:, names.index(row["phase"])]
            assert row[name]["mean"] == pytest.approx(values.mean())
            assert row[name]["std"] == pytest.approx(values.std(ddof=1))
    mem = results["memorisation"]
    assert len(mem["generated"]["nearest_agreement"]) == 6 and mem["searched_fraction_of_training_positions"] == 1.0
    assert results["settings"]["real"][0]["non_overlapping_crops"] == 27
    assert results["settings"]["real_set"] == f"6 crops from 1 volume (6 from {files / 'real.tif'})"
    assert len(results["two_point_correlation"]["band"]) == 6 and "seams" not in results


def test_compare_cli_several_real_volumes_with_fewer_crops_than_generated(files, capsys):
    out = files / "several"
    real = [str(files / f"{name}.tif") for name in "abc"]
    assert (
        main(
            [
                "compare",
                "--real",
                *real,
                "--checkpoint",
                str(files / "ckpt"),
                "--n",
                "12",
                "--size",
                "32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "characterise real: 10/10" in capsys.readouterr().out
    results = json.loads((out / "metrics.json").read_text())
    s = results["settings"]
    assert [v["file"] for v in s["real"]] == real and [v["crops"] for v in s["real"]] == [1, 8, 1]
    assert [v["distinct_crop_positions"] for v in s["real"]] == [1, 8, 1] and s["real_crops"] == 10
    assert s["real_crop_volumes"] == [0, 1, 2, 1, 1, 1, 1, 1, 1, 1]
    assert len({tuple(p) for p, v in zip(s["real_crop_positions"], s["real_crop_volumes"]) if v == 1}) == 8
    assert all(v["is_training_data"] is None for v in s["real"])
    assert all(r["real"]["n"] == 10 and r["generated"]["n"] == 12 for r in results["table"])
    assert len(results["samples"]["real"]["volume_fraction"]) == 10
    assert len(results["samples"]["generated"]["volume_fraction"]) == 12
    mem = results["memorisation"]
    assert mem["searched_volumes"] == real and mem["searched_fraction_of_training_positions"] == 1.0
    assert len(mem["generated"]["nearest_agreement"]) == 12 and len(mem["baseline"]["nearest_agreement"]) == 10
    markdown = (out / "report.md").read_text()
    assert (
        f"**Real set: 10 crops from 3 volumes (1 from {real[0]}, 8 from {real[1]}, 1 from {real[2]}); 12 were "
        "asked for, but the sampled regions hold only 10 distinct crop positions of side 32.**"
    ) in markdown
    assert [row[:3] for row in _table(markdown, "real volume")] == [
        [f"`{r}`", f"{side} x {side} x {side}", count] for r, side, count in zip(real, (32, 33, 32), "181")
    ]
    assert "none of them is the checkpoint's training data" not in markdown  # init records no training data
    assert "the checkpoint records no training data: this measures similarity to them" in markdown
    assert "Real set: 10 crops from 3 volumes" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "case, real, message",
    [
        ("missing", ["real", "nope"], "file not found: {nope}"),
        (
            "labels",
            ["real", "other_labels", "a"],
            "real volume {other_labels} has labels [0, 128, 255] but the checkpoint's phases are [0, 1]",
        ),
        ("small", ["a", "small", "b"], "real volume {small} of shape (16, 16, 16) is smaller than the crop size 32"),
        ("one crop", ["a"], "hold only 1 distinct crop position of side 32 but a std needs two real crops"),
    ],
)
def test_compare_cli_errors(files, capsys, case, real, message):
    paths = {name: str(files / f"{name}.tif") for name in real}
    assert (
        main(
            [
                "compare",
                "--real",
                *paths.values(),
                "--checkpoint",
                str(files / "ckpt"),
                "--n",
                "4",
                "--size",
                "32",
                "--out",
                str(files / f"err_{case}"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("porejax compare: error:") and message.format(**paths) in err, err
    assert not (files / f"err_{case}").exists()


def test_compare_without_a_voxel_size_reports_per_voxel_units_and_says_so(files):
    out = files / "per_voxel"
    results = compare.compare(
        files / "real.tif", files / "no_voxel", n=3, size=SIDE, out=out, progress=None, timing_latent_sides=(1, 2)
    )
    assert results["settings"]["voxel_size_um"] is None and results["settings"]["length_unit"] == "voxel"
    units = {row["metric"]: row["unit"] for row in results["table"]}
    assert units == {"volume_fraction": "", "specific_surface_area": "voxel⁻¹", "relative_diffusivity": ""}
    markdown = (out / "report.md").read_text()
    assert "no voxel size known: lengths are in voxels" in markdown and "µm" not in markdown
