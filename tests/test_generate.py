"""Generation: output sizes, the exact periodic identity, seams, chunked == one-shot, determinism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tifffile

import porejax
from porejax import checkpoint, presets
from porejax.cli import main
from porejax.generate import FrozenGenerator, parse_periodic, periodic_halo
from porejax.latents import interpolate_latents
from porejax.models import Generator, init_variables
from porejax.volume import PhaseMap

from smooth_generator import LABELS, smooth_generator


# a 3^3 output layer after the last stride 2
TINY_WITH_HEAD = dataclasses.replace(presets.model("tiny", 3), head_width=4)


@pytest.fixture(scope="module")
def gen() -> FrozenGenerator:
    return smooth_generator()


@pytest.fixture(scope="module")
def head_gen() -> FrozenGenerator:
    return smooth_generator(TINY_WITH_HEAD)


def test_output_sizes_follow_the_paper():
    paper = presets.model("paper", 3)
    assert [paper.output_side(a, False) for a in (1, 2, 5)] == [64 + 16 * (a - 1) for a in (1, 2, 5)]
    assert [paper.output_side(a, True) for a in (1, 2, 5)] == [16 * a for a in (1, 2, 5)]
    g_vars, _ = jax.eval_shape(lambda: init_variables(paper, jax.random.PRNGKey(0)))
    gen = FrozenGenerator(paper, PhaseMap(LABELS), g_vars)
    assert gen.output_shape((2, 3, 1), "y") == (80, 48, 64)
    assert gen.latent_size_for(100, "") == (4, 4, 4)  # 16 * (4 + 3) = 112 >= 100 > 96
    assert gen.latent_size_for(96, "xyz") == (6, 6, 6)
    with pytest.raises(porejax.PorejaxError, match="multiple of 16"):
        gen.latent_size_for(100, "x")


def test_generated_shape_and_labels(gen):
    z = gen.latent(seed=0, size=(2, 3, 1))
    p = gen.probabilities(z)
    assert p.shape == (40, 48, 32, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    v = gen.labels(z, periodic="xz")
    assert v.shape == (16, 48, 8) and set(np.unique(v)) <= set(LABELS)
    assert len(np.unique(gen.labels(gen.latent(seed=0, size=4)))) == 3


def _tiled_central_crop(g: FrozenGenerator, z: np.ndarray, periodic: str, tiles: int):
    """(z tiled `tiles` times along its periodic axes, the central crop of the zero-padded output on that
    tiled latent which should equal the periodic output of z)."""
    tiled = np.tile(z, [tiles if f else 1 for f in parse_periodic(periodic)] + [1])
    full, per = g.output_shape(tiled.shape[:3], ""), g.output_shape(z.shape[:3], periodic)
    return tiled, tuple(slice((f - n) // 2, (f - n) // 2 + n) for f, n in zip(full, per))


def _assert_chunked_equals_one_shot(g: FrozenGenerator, z: np.ndarray, periodic: str, chunk, p: np.ndarray):
    labels, confidence = g.generate(z, periodic, chunk=chunk)
    assert np.array_equal(labels, g.labels(z, periodic))
    np.testing.assert_allclose(confidence, p.max(-1), atol=1e-6)


@pytest.mark.parametrize("periodic", ["xyz", "y", "xz"])
def test_periodic_equals_central_crop_of_tiled_latent(gen, periodic):
    z = gen.latent(seed=3, size=3)
    tiled, crop = _tiled_central_crop(gen, z, periodic, 3)
    np.testing.assert_allclose(_circular(gen, z, periodic), gen.probabilities(tiled, periodic="")[crop], atol=1e-5)
    np.testing.assert_allclose(gen.probabilities(z, periodic), gen.probabilities(tiled, periodic="")[crop], atol=1e-5)
    assert np.array_equal(gen.labels(z, periodic), gen.labels(tiled, "")[crop])


def _mismatch(volumes: np.ndarray, axis: int) -> tuple[np.ndarray, float]:
    """Label mismatch between neighbouring interior slices along `axis` of a batch (B, D, H, W), and
    across the wrap seam (last slice vs first), each averaged over the batch."""
    w = np.moveaxis(volumes, axis + 1, 1)
    return (w[:, 1:] != w[:, :-1]).mean(axis=(0, 2, 3)), float((w[:, 0] != w[:, -1]).mean())


def _latents(gen, size, seeds=(4, 5, 6)):
    return np.stack([gen.latent(seed, size) for seed in seeds])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_seams(gen, axis):
    z = _latents(gen, 6)
    interior, seam = _mismatch(gen.labels(z, "xyz"), axis)
    assert interior.mean() < 0.1  # structure: neighbouring slices mostly agree
    assert abs(seam - interior.mean()) < 3 * interior.std() + 0.01
    interior_open, seam_open = _mismatch(gen.labels(z, ""), axis)
    assert seam_open > 3 * interior_open.mean() + 3 * interior_open.std()


def test_periodic_tiles_seamlessly_in_chosen_axes_only(gen):
    z = _latents(gen, (6, 4, 4))
    v = gen.labels(z, "x")
    assert v.shape == (3, 48, 56, 56)
    interior_x, seam_x = _mismatch(v, 0)
    assert abs(seam_x - interior_x.mean()) < 3 * interior_x.std() + 0.01
    interior_y, seam_y = _mismatch(v, 1)
    assert seam_y > 3 * interior_y.mean() + 3 * interior_y.std()


# every periodicity with a tile side that divides no axis (13), one that divides some (8), one piece (None)
# and tiles larger than some axes (40)
@pytest.mark.parametrize(("periodic", "chunk"), [("", None), ("", 13), ("xyz", 8), ("xyz", 13), ("yz", 13), ("yz", 40)])
def test_chunked_equals_one_shot(gen, periodic, chunk):
    z = gen.latent(seed=6, size=(3, 2, 4))
    _assert_chunked_equals_one_shot(gen, z, periodic, chunk, gen.probabilities(z, periodic))


@pytest.mark.parametrize(("periodic", "chunk"), [("", 13), ("xyz", 8), ("y", 13)])
def test_output_head_keeps_sizes_periodic_identity_and_chunking(head_gen, periodic, chunk):
    z = head_gen.latent(seed=3, size=(3, 2, 2))
    p = head_gen.probabilities(z, periodic)
    tiled, crop = _tiled_central_crop(head_gen, z, periodic, 5)  # 2 latent voxels per side: 5 tiles cover the halo
    assert p.shape[:3] == tuple(8 * (a if f else a + 3) for a, f in zip((3, 2, 2), parse_periodic(periodic)))
    np.testing.assert_allclose(p, head_gen.probabilities(tiled, periodic="")[crop], atol=1e-5)
    _assert_chunked_equals_one_shot(head_gen, z, periodic, chunk, p)


def test_chunked_size_is_the_central_crop(gen):
    z = gen.latent(seed=7, size=3)
    full = gen.labels(z)
    labels, _ = gen.generate(z, size=(30, 47, 48), chunk=11)
    starts = [(f - n) // 2 for f, n in zip(full.shape, labels.shape)]
    assert labels.shape == (30, 47, 48)
    assert np.array_equal(
        labels, full[starts[0] : starts[0] + 30, starts[1] : starts[1] + 47, starts[2] : starts[2] + 48]
    )


def test_halo_is_the_receptive_field():
    assert periodic_halo(presets.model("paper", 3)) == 3
    assert periodic_halo(presets.model("tiny", 3)) == 3
    assert periodic_halo(TINY_WITH_HEAD) == 3  # one more voxel of reach at the output: within the same latent


def test_deterministic_and_streamed(gen, tmp_path):
    z = gen.latent(seed=8, size=2)
    assert np.array_equal(z, gen.latent(seed=8, size=2))
    assert not np.array_equal(z, gen.latent(seed=9, size=2))
    shape = gen.write(tmp_path / "a.tif", z, "xy", chunk=9, confidence_path=tmp_path / "c.tif")
    labels = tifffile.imread(tmp_path / "a.tif")
    assert labels.shape == shape == (16, 16, 40)
    assert np.array_equal(labels, gen.labels(z, "xy"))
    np.testing.assert_allclose(tifffile.imread(tmp_path / "c.tif"), gen.confidence(z, "xy"), atol=1e-6)
    gen.write(tmp_path / "b.tif", z, "xy")
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()


def test_interpolation_endpoints_and_norm(gen):
    z0, z1 = gen.latent(seed=0, size=2), gen.latent(seed=1, size=2)
    path = interpolate_latents(z0, z1, 5)
    assert path.shape == (5,) + z0.shape
    np.testing.assert_allclose(path[0], z0, atol=1e-5)
    np.testing.assert_allclose(path[-1], z1, atol=1e-5)
    norms = np.linalg.norm(path.reshape(5, -1), axis=1)
    assert norms.min() > 0.9 * min(norms[0], norms[-1])  # slerp keeps Gaussian-typical norms
    linear = interpolate_latents(z0, z1, 3, method="linear")
    np.testing.assert_allclose(linear[1], (z0 + z1) / 2, atol=1e-6)
    assert gen.labels(path).shape == (5, 40, 40, 40)


def test_load_generator_and_cli(gen, tmp_path, capsys):
    workdir = tmp_path / "ck"
    checkpoint.write_metadata(workdir, gen.config, gen.phase_map)
    checkpoint.save(workdir, 0, gen.variables)
    loaded = porejax.load_generator(workdir)
    z = loaded.latent(seed=0, size=2)
    assert np.array_equal(loaded.labels(z), gen.labels(z))
    out = tmp_path / "g.tif"
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(workdir),
                "--size",
                "40",
                "--periodic",
                "xyz",
                "--count",
                "2",
                "--seed",
                "3",
                "--chunk",
                "17",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    first = tifffile.imread(tmp_path / "g_0.tif")
    assert first.shape == (40, 40, 40)
    assert np.array_equal(first, gen.labels(gen.latent(3, 5), "xyz"))
    assert np.array_equal(tifffile.imread(tmp_path / "g_1.tif"), gen.labels(gen.latent(4, 5), "xyz"))
    assert main(["generate", "--checkpoint", str(workdir), "--size", "30", "--out", str(out)]) == 0
    assert tifffile.imread(out).shape == (30, 30, 30)
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(workdir),
                "--size",
                "30",
                "--periodic",
                "x",
                "--out",
                str(tmp_path / "bad.tif"),
            ]
        )
        == 2
    )
    assert "multiple of 8" in capsys.readouterr().err
    assert not (tmp_path / "bad.tif").exists()
    assert main(["generate", "--checkpoint", str(tmp_path / "missing"), "--size", "32", "--out", str(out)]) == 2
    assert main(["generate", "--checkpoint", str(workdir), "--size", "32", "--periodic", "xw", "--out", str(out)]) == 2


def test_stationary_statistics_describe_the_interior(gen):
    """Periodic latents have no boundary, so their statistics hardly depend on the latent side, unlike
    statistics of training-size (1^3, all boundary) latents; they are deterministic in the seed."""
    # two latents per batch: a 3^3 latent alone is too small to hold the spread between samples
    small = gen.with_stationary_statistics(latent_size=3, batches=2, batch_size=2, seed=0).variables["batch_stats"]
    large = gen.with_stationary_statistics(latent_size=5, batches=2, batch_size=2, seed=1).variables["batch_stats"]
    again = gen.with_stationary_statistics(latent_size=3, batches=2, batch_size=2, seed=0).variables["batch_stats"]
    first = sorted(small)[0]
    assert np.array_equal(small[first]["var"], again[first]["var"])
    var_s, var_l = np.asarray(small[first]["var"]), np.asarray(large[first]["var"])
    assert abs(var_s.mean() / var_l.mean() - 1) < 0.3
    config = gen.config
    z = jnp.asarray(np.stack([gen.latent(s, 1) for s in range(8)]))
    from porejax.models import Generator

    _, updated = Generator(config).apply(gen.variables, z, train=True, mutable=["batch_stats"])
    boundary_var = (
        np.asarray(updated["batch_stats"][first]["var"]) - 0.9 * np.asarray(gen.variables["batch_stats"][first]["var"])
    ) / 0.1
    assert np.median(var_s / boundary_var) > 4  # interior activations sum over the whole kernel


def test_default_chunk_is_one_piece_up_to_384_and_tiles_compute_only_what_they_need():
    from porejax.generate.plan import DEFAULT_CHUNK, default_chunk, latent_window, layer_crops, plan

    config = presets.model("paper", 3)
    for side, expected in ((64, 64), (384, 384), (385, DEFAULT_CHUNK), (512, DEFAULT_CHUNK)):
        a = max(1, -(-side // 16) - 3)
        assert default_chunk(plan(config, (a,) * 3, (False,) * 3, (side,) * 3, False)) == expected
    assert default_chunk(plan(config, (16,) * 3, (True,) * 3, None, True)) == 256  # 256^3 periodic: one piece
    l0, l1 = latent_window(config, 1000, 1256)  # an interior tile of 256 (window frame: 1000 - 16 * l0)
    kept = layer_crops(config, l1 - l0, 1000 - 16 * l0, 1256 - 16 * l0)
    assert kept[-1][1] == 256 and [length for _, length in kept] == [
        19,
        35,
        67,
        130,
        256,
    ]  # uncropped: 25, 50, 100, 200, 400
    for lo in range(16):  # every alignment of equal tiles keeps equal lengths: one compiled program
        assert [n for _, n in layer_crops(config, l1 - l0 + 1, lo + 8, lo + 8 + 256)] == [19, 35, 67, 130, 256]


def _circular(g: FrozenGenerator, z: np.ndarray, periodic: str) -> np.ndarray:
    """The generator module itself: circular padding on periodic axes, zero padding elsewhere, whole output."""
    return np.asarray(
        Generator(g.config).apply(g.variables, jnp.asarray(z)[None], train=False, periodic=parse_periodic(periodic))[0]
    )


@pytest.mark.parametrize("periodic", ["", "xyz", "y"])
def test_one_shot_equals_the_module_in_its_window(gen, periodic):
    """probabilities() computes only the output window of the module's own (circular / zero) padding."""
    z = gen.latent(seed=2, size=(3, 2, 4))
    window = gen.output_window(z.shape[:3], periodic)
    np.testing.assert_allclose(gen.probabilities(z, periodic), _circular(gen, z, periodic)[window], atol=1e-5)


@pytest.fixture(scope="module")
def interior_gen(gen) -> FrozenGenerator:
    """The smooth test generator, as if trained on periodic latents: non-periodic axes give the interior."""
    return dataclasses.replace(gen, training_latent="periodic")


def test_periodically_trained_generators_give_the_interior_of_non_periodic_axes(interior_gen):
    g, h, u = interior_gen, periodic_halo(interior_gen.config), interior_gen.config.period_unit
    assert g.latent_size_for(32) == (4 + 2 * h,) * 3 and g.latent_size_for(32, "xyz") == (4, 4, 4)
    assert g.latent_size_for(1) == (1 + 2 * h,) * 3
    assert g.output_shape((10, 7, 4), "z") == (u * 4, u * 1, u * 4)
    with pytest.raises(porejax.PorejaxError, match=f"at least {2 * h + 1} along y"):
        g.labels(g.latent(0, (7, 6, 7)))
    # the interior of a non-periodic axis is exactly the periodic volume of the same latent, minus its
    # outer h latent voxels: no voxel there depends on padding of either kind
    z = g.latent(seed=5, size=(8, 9, 4))
    inner = g.probabilities(z, "z")
    periodic = g.probabilities(z, "xyz")
    assert inner.shape[:3] == (u * 2, u * 3, u * 4)
    np.testing.assert_allclose(inner, periodic[u * h : -u * h, u * h : -u * h], atol=1e-5)
    np.testing.assert_allclose(inner, _circular(g, z, "z")[g.output_window(z.shape[:3], "z")], atol=1e-5)
    v = g.labels(z, "z", size=(5, 17, 32))
    assert v.shape == (5, 17, 32)


def test_periodic_volumes_smaller_than_the_training_ones_are_refused_naming_the_smallest(gen, interior_gen, tmp_path):
    """A torus smaller than the periodic latents a generator trained on repeats latent values inside its
    receptive field: refused, one line naming the smallest size; 1^3-trained generators keep every size."""
    u, least = interior_gen.config.period_unit, interior_gen.config.crop_size // interior_gen.config.period_unit
    message = f"needs at least {least * u} voxels \\({least} latent voxels\\) along y.*Use --size {least * u}"
    with pytest.raises(porejax.PorejaxError, match=message):
        interior_gen.labels(interior_gen.latent(0, (least, least - 1, least)), "xyz")
    with pytest.raises(porejax.PorejaxError, match=message):
        interior_gen.latent_size_for((least * u, least * u - u, 8), "y")
    assert interior_gen.labels(interior_gen.latent(0, interior_gen.latent_size_for(8)), size=8).shape == (8, 8, 8)
    assert interior_gen.labels(interior_gen.latent(0, (least, 2 * least, least)), "xyz").shape[1] == 2 * least * u
    assert gen.labels(gen.latent(0, 1), "xyz").shape == (u, u, u)  # trained on 1^3 latents: any torus


@pytest.mark.parametrize(("periodic", "chunk"), [("", None), ("", 7), ("x", 16)])
def test_interior_chunked_equals_one_shot(interior_gen, periodic, chunk):
    z = interior_gen.latent(seed=6, size=(9, 7, 8))
    _assert_chunked_equals_one_shot(interior_gen, z, periodic, chunk, interior_gen.probabilities(z, periodic))


def test_probability_fn_is_differentiable_and_equals_probabilities(interior_gen):
    g = interior_gen
    z = g.latent(seed=4, size=(8, 7, 4))
    fn = g.probability_fn(z.shape[:3], "z", size=(12, 8, 32))
    np.testing.assert_allclose(np.asarray(jax.jit(fn)(z)), g.probabilities(z, "z", size=(12, 8, 32)), atol=1e-5)
    grad = jax.grad(lambda latent: fn(latent)[..., 0].mean())(jnp.asarray(z))
    assert grad.shape == z.shape and np.isfinite(grad).all() and np.abs(grad).max() > 0
