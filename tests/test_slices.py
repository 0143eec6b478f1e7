"""Training from 2D images: slice geometry, slice discriminators, resume, devices, direction dependence, errors."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tifffile

import porejax
from porejax import checkpoint, cli, latents, losses, metrics, slices, synthetic, train
from porejax.errors import PorejaxError
from porejax.models import ModelConfig, SliceDiscriminator, init_slice_discriminators, init_variables
from porejax.volume import PhaseMap, validate_volume

MICRO = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4,))  # 8^3 volumes, 8^2 slices
PHASES = PhaseMap((0, 85, 170), ("pore", "nmc", "binder"), 0.5)
QUIET = dict(
    log_every=1,
    eval_every=1000,
    checkpoint_every=2,
    eval_samples=2,
    standing_batches=2,
    batch_size=4,
    discriminator="slices",
)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return synthetic.cathode(12, seed=0)


@pytest.fixture(scope="module")
def images(volume) -> dict:
    """One central plane normal to each axis of `volume`, in the documented image axes."""
    return {"x": [volume[6]], "y": [volume[:, 6, :]], "z": [volume[:, :, 6]]}


def _log(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / train.LOG_FILE).read_text().splitlines()]


def _losses(records) -> list[tuple]:
    return [(r["step"], r["loss_d"], r["loss_g"], r["d_real"], r["d_fake"]) for r in records]


def test_slices_follow_the_documented_image_axes():
    v = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    planes = slices.volume_slices(v)
    np.testing.assert_array_equal(planes["x"][1], v[1, :, :])  # (y, z)
    np.testing.assert_array_equal(planes["y"][2], v[:, 2, :])  # (x, z)
    np.testing.assert_array_equal(planes["z"][3], v[:, :, 3])  # (x, y)
    cube = jnp.asarray(np.random.default_rng(0).random((2, 4, 4, 4, 3)), jnp.float32)
    for axis in range(3):
        every = slices.generated_slices(cube, axis, 4)
        assert every.shape == (8, 4, 4, 3)
        expected = np.stack([slices.volume_slices(np.asarray(cube[1, ..., c]))["xyz"[axis]] for c in range(3)], -1)
        np.testing.assert_array_equal(every[4:], expected)  # volume 1's slices follow volume 0's
        some = slices.generated_slices(cube, axis, 2, jax.random.PRNGKey(axis))
        assert some.shape == (4, 4, 4, 3)
        for b in range(2):  # 2 distinct slices of each volume
            found = [i for i in range(4) if any(np.array_equal(s, every[4 * b + i]) for s in some[2 * b : 2 * b + 2])]
            assert len(found) == 2


def test_each_discriminator_gets_gradients_from_its_own_axis_only_and_passes_them_to_the_generator():
    g_vars, _ = init_variables(MICRO, jax.random.PRNGKey(0))
    d_vars = init_slice_discriminators(MICRO, slices.AXIS_KEYS, jax.random.PRNGKey(1))
    assert set(d_vars["params"]) == {"x", "y", "z"}
    z = latents.draw_training_latents(MICRO, "periodic", jax.random.PRNGKey(2), 2)
    spec = slices.SliceSpec(8, 2, 8, 3, slices.AXIS_KEYS, ((8, 8),) * 3)
    judge = train.SliceJudge(MICRO, spec, train.make_mesh())
    for axis, name in enumerate(slices.AXIS_KEYS):

        def loss(g_params, d_params, per_volume, axis=axis, name=name):
            fake, _ = train.apply_generator(MICRO, "periodic", g_params, g_vars["batch_stats"], z)
            x = slices.generated_slices(fake, axis, per_volume, jax.random.PRNGKey(3))
            assert x.shape == (2 * per_volume, 8, 8, 3)
            logits, _ = judge.apply(d_params, d_vars["batch_stats"], axis, x)
            assert logits.shape == (2 * per_volume,)
            return losses.bce_generator(logits)

        g_grad, d_grad = jax.grad(loss, argnums=(0, 1))(g_vars["params"], d_vars["params"], 8)
        norms = {k: float(_norm(v)) for k, v in d_grad.items()}
        assert norms[name] > 0 and all(norms[k] == 0 for k in norms if k != name)
        assert float(_norm(g_grad)) > 0

        # a subset of 3 slices per volume: only those slices of the volume receive gradient
        def volume_loss(fake, axis=axis, name=name):
            x = slices.generated_slices(fake, axis, 3, jax.random.PRNGKey(3))
            return losses.bce_generator(SliceDiscriminator(MICRO).apply({"params": d_vars["params"][name]}, x))

        fake, _ = train.apply_generator(MICRO, "periodic", g_vars["params"], g_vars["batch_stats"], z)
        grad = np.abs(np.asarray(jax.grad(volume_loss)(fake)))
        per_slice = grad.sum(axis=tuple(a for a in range(5) if a not in (0, 1 + axis)))
        assert [int(np.count_nonzero(row)) for row in per_slice] == [3, 3]


def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def test_resume_from_2d_images_follows_the_uninterrupted_trajectory_and_generates(tmp_path, images):
    config = train.TrainConfig(steps=4, slices_per_volume=3, **QUIET)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train([], PHASES, straight, MICRO, config, images=images, progress=False)
    train.train([], PHASES, split, MICRO, dataclasses.replace(config, steps=2), images=images, progress=False)
    train.train([], PHASES, split, MICRO, config, images=images, resume=True, progress=False)
    assert _losses(_log(split)) == _losses(_log(straight))
    target = jax.eval_shape(lambda: train.init_state(MICRO, config.resolved())).to_dict()
    a, b = (checkpoint.restore_state(w, target)[0] for w in (straight, split))
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert set(a["d_params"]) == {"x", "y", "z"} and int(a["d_opt"][0].count) == 4 and int(a["g_opt"][0].count) == 8
    meta = checkpoint.read_metadata(split)
    assert meta["train"]["discriminator"] == "slices" and meta["train"]["slices_per_volume"] == 3
    assert meta["data"]["slices"]["discriminators"] == ["x", "y", "z"]
    assert meta["data"]["slices"]["images"]["y"][0]["shape"] == [1, 12, 12] and meta["data"]["volumes"] == []
    swapped = {"x": images["y"], "y": images["x"], "z": images["z"]}
    with pytest.raises(PorejaxError, match="training data differ"):
        train.train([], PHASES, split, MICRO, config, images=swapped, resume=True, progress=False)
    # the generator checkpoint is an ordinary one: periodic generation of any size from the training one's up
    labels = porejax.load_generator(split).labels(np.zeros((4, 5, 4, 4), np.float32), "xyz")
    assert labels.shape == (8, 10, 8) and set(np.unique(labels)) <= set(PHASES.labels)


def test_two_devices_give_the_losses_of_one_for_the_same_global_batch(tmp_path, volume):
    assert len(jax.devices()) == 2, "tests/conftest.py fakes two CPU devices"
    config = train.TrainConfig(steps=2, **{**QUIET, "discriminator": "shared-slices"})
    runs = {}
    for n in (1, 2):
        train.train([volume], PHASES, tmp_path / str(n), MICRO, config, devices=jax.devices()[:n], progress=False)
        runs[n] = np.array([r[1:] for r in _losses(_log(tmp_path / str(n)))])
    np.testing.assert_allclose(runs[2], runs[1], rtol=2e-4, atol=1e-5)
    meta = checkpoint.read_metadata(tmp_path / "1")
    assert meta["data"]["slices"]["discriminators"] == ["xyz"] and meta["data"]["volumes"][0]["shape"] == [12, 12, 12]


def test_wgan_gp_runs_n_critic_updates_of_every_axis_critic_per_generator_update(tmp_path, volume):
    config = train.TrainConfig(loss="wgan-gp", n_critic=2, steps=1, **QUIET)
    summary = train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    assert summary["metrics"]["gp"] > 0
    target = jax.eval_shape(
        lambda: train.init_state(dataclasses.replace(MICRO, d_norm="layer"), config.resolved())
    ).to_dict()
    state = checkpoint.restore_state(tmp_path, target)[0]
    assert int(state["d_opt"][0].count) == 2 and int(state["g_opt"][0].count) == 1
    fresh = init_slice_discriminators(
        dataclasses.replace(MICRO, d_norm="layer"),
        slices.AXIS_KEYS,
        jax.random.split(jax.random.split(jax.random.PRNGKey(0), 3)[0])[1],
    )
    for name in "xyz":  # every axis's critic was trained
        assert not np.allclose(state["d_params"][name]["conv0"]["kernel"], fresh["params"][name]["conv0"]["kernel"])


def _fibres(side: int, seed: int = 0) -> np.ndarray:
    """Two phases, fibres along x: a thresholded smooth random field of (y, z), the same at every x."""
    rng = np.random.default_rng(seed)
    field = rng.standard_normal((side, side))
    k = np.fft.fftfreq(side)
    field = np.real(
        np.fft.ifft2(np.fft.fft2(field) * np.exp(-(k[:, None] ** 2 + k[None] ** 2) * 2 * (np.pi * 1.5) ** 2))
    )
    plane = (field > np.median(field)).astype(np.uint8) * 255
    return np.broadcast_to(plane, (side, side, side)).copy()


def test_fibres_along_x_train_a_generator_whose_volumes_are_longer_correlated_along_x(tmp_path):
    data = _fibres(32)
    # 16^3 volumes, 16^2 slices; the output head damps the checkerboard that would dominate S2 this early
    model = ModelConfig(n_phases=2, latent_channels=8, g_widths=(16, 8), d_widths=(8, 16), head_width=4)
    config = train.TrainConfig(steps=60, lr=1e-3, **{**QUIET, "checkpoint_every": 60})
    train.train([data], PhaseMap((0, 255)), tmp_path, model, config, progress=False)
    gen = porejax.load_generator(tmp_path)
    volumes = np.stack([gen.labels(gen.latent(s, 8), "xyz") for s in range(4)]) == 255

    def correlation(masks, axis):  # mean S2 over lags 1..4 along `axis`
        return float(np.mean(metrics.two_point_correlation(masks, axis=axis, periodic=True, max_lag=5)[1][..., 1:]))

    real = [correlation(data[None] == 255, a) for a in range(3)]
    assert real[0] > max(real[1:]) + 0.1  # the data: much longer along x
    generated = [correlation(volumes, a) for a in range(3)]
    # after 60 steps x leads the other axes by ~0.05 (XLA optimised or not): 0.03 leaves room for rounding
    assert generated[0] > max(generated[1:]) + 0.03, generated


def test_bad_2d_input_is_refused_with_one_line_naming_the_fix(tmp_path, volume, images, capsys):
    with pytest.raises(PorejaxError, match="2D image.*--slices"):
        validate_volume(volume[0])
    with pytest.raises(PorejaxError, match="looks like an RGB"):
        slices.as_image_stack(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(PorejaxError, match="expected a 2D label image"):
        slices.as_image_stack(np.zeros((2, 8, 8, 8), np.uint8))
    two_phase = {**images, "z": [np.where(images["z"][0] == 170, 85, images["z"][0])]}
    with pytest.raises(
        PorejaxError, match=r"z image 0 has labels \[0, 85\] but the images together have \[0, 85, 170\]"
    ):
        slices.phase_map_of(two_phase)
    small = {key: [im[:6, :6]] for key, im in ((k, v[0]) for k, v in images.items())}
    config = train.TrainConfig(steps=1, **QUIET)
    with pytest.raises(PorejaxError, match=r"x images of shape \(6, 6\) are smaller than the 8\^2 slices"):
        train.train([], PHASES, tmp_path / "a", MICRO, config, images=small, progress=False)
    with pytest.raises(PorejaxError, match="2D images train slice discriminators"):
        train.train(
            [],
            PHASES,
            tmp_path / "b",
            MICRO,
            dataclasses.replace(config, discriminator="volume"),
            images=images,
            progress=False,
        )
    with pytest.raises(PorejaxError, match=r"shared-slices discriminators need one image set"):
        train.train(
            [],
            PHASES,
            tmp_path / "c",
            MICRO,
            dataclasses.replace(config, discriminator="shared-slices"),
            images=images,
            progress=False,
        )
    for name, image in (("x.tif", images["x"][0]), ("y.tif", images["y"][0]), ("v.tif", volume)):
        tifffile.imwrite(tmp_path / name, image)
    base = ["train", "--workdir", str(tmp_path / "run"), "--preset", "slices-tiny", "--steps", "1"]
    runs = {
        "give one of --data": base + ["--data", str(tmp_path / "v.tif"), "--slices", str(tmp_path / "x.tif")],
        "missing --slices-z": base + ["--slices-x", str(tmp_path / "x.tif"), "--slices-y", str(tmp_path / "y.tif")],
        "2D image; porejax needs a 3D stack": base + ["--data", str(tmp_path / "x.tif")],
    }
    for message, args in runs.items():
        capsys.readouterr()
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cli_trains_from_three_images_of_the_planes(tmp_path):
    cube = synthetic.cathode(36, seed=2)
    paths = {}
    for axis, image in zip("xyz", (cube[18], cube[:, 18, :], cube[:, :, 18])):
        paths[axis] = tmp_path / f"{axis}.tif"
        tifffile.imwrite(paths[axis], image)
    work = tmp_path / "run"
    args = [
        "train",
        *(a for axis in "xyz" for a in (f"--slices-{axis}", str(paths[axis]))),
        "--workdir",
        str(work),
        "--preset",
        "slices-tiny",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--slices-per-volume",
        "4",
        "--eval-every",
        "1",
        "--checkpoint-every",
        "1",
        "--voxel-size",
        "0.4",
    ]
    assert cli.main(args) == 0
    meta = checkpoint.read_metadata(work)
    assert meta["train"]["discriminator"] == "slices" and meta["preset"] == "slices-tiny"
    assert [v["source"] for v in meta["data"]["slices"]["images"]["z"]] == ["z.tif"]
    assert _log(work)[-1]["eval"]["vf_real"] and "ssa_real" not in _log(work)[-1]["eval"]
    out = tmp_path / "g.tif"
    assert (
        cli.main(["generate", "--checkpoint", str(work), "--size", "40", "--periodic", "xyz", "--out", str(out)]) == 0
    )
    assert tifffile.imread(out).shape == (40, 40, 40)


def test_a_3d_discriminator_beside_the_slice_ones_trains_all_four_and_resumes_exactly(tmp_path, volume):
    config = train.TrainConfig(
        steps=4, loss="wgan-gp", n_critic=2, slices_per_volume=3, **{**QUIET, "discriminator": "volume+slices"}
    )
    model = dataclasses.replace(MICRO, d_norm="layer")  # critics without BatchNorm, as the slice presets
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train([volume], PHASES, straight, model, config, progress=False)
    train.train([volume], PHASES, split, model, dataclasses.replace(config, steps=2), progress=False)
    train.train([volume], PHASES, split, model, config, resume=True, progress=False)
    assert _losses(_log(split)) == _losses(_log(straight))
    fresh = train.init_state(model, config.resolved())
    state = checkpoint.restore_state(split, jax.eval_shape(lambda: fresh).to_dict())[0]
    assert set(state["d_params"]) == {"volume", "x", "y", "z"}
    for name in ("volume", "x", "y", "z"):  # every discriminator learned
        delta = jax.tree_util.tree_map(lambda a, b: a - b, state["d_params"][name], fresh.d_params[name])
        assert float(_norm(delta)) > 0, name
    assert jax.tree_util.tree_leaves(state["d_params"]["volume"])[0].ndim == 5  # a 3D kernel
    meta = checkpoint.read_metadata(split)
    assert meta["train"]["discriminator"] == "volume+slices"
    assert meta["data"]["slices"]["discriminators"] == ["volume", "x", "y", "z"]
    assert meta["data"]["volumes"][0]["shape"] == [12, 12, 12]


def test_the_3d_discriminator_of_a_mixed_judge_sees_crops_and_passes_gradients_to_the_generator(volume):
    spec, arrays, _, _ = train.training_data(
        [volume], None, PHASES, MICRO, train.TrainConfig(batch_size=2, discriminator="volume+slices"), ["v"]
    )
    judge = train.MixedJudge(
        train.VolumeJudge(MICRO, spec.crops, train.make_mesh()), train.SliceJudge(MICRO, spec.slices, train.make_mesh())
    )
    assert judge.count == 4
    real = judge.real(jax.device_put(arrays), jax.random.PRNGKey(0), jax.random.PRNGKey(1), jnp.int32(0))
    assert [r.shape for r in real] == [(2, 8, 8, 8, 3)] + [(16, 8, 8, 3)] * 3
    state = train.init_state(MICRO, train.TrainConfig(discriminator="volume+slices").resolved())
    z = latents.draw_training_latents(MICRO, "periodic", jax.random.PRNGKey(2), 2)

    def loss(g_params, d_params):  # the 3D discriminator alone
        fake, _ = train.apply_generator(MICRO, "periodic", g_params, state.g_stats, z)
        logits, _ = judge.apply(d_params, state.d_stats, 0, judge.fake(fake, jax.random.PRNGKey(3))[0])
        return losses.bce_generator(logits)

    g_grad, d_grad = jax.grad(loss, argnums=(0, 1))(state.g_params, state.d_params)
    assert float(_norm(g_grad)) > 0 and float(_norm(d_grad["volume"])) > 0
    assert all(float(_norm(d_grad[k])) == 0 for k in "xyz")
    with pytest.raises(PorejaxError, match=r"volume\+slices judges 3D crops and 2D slices of 3D volumes"):
        train.training_data(
            [],
            {"x": [volume[0]], "y": [volume[0]], "z": [volume[0]]},
            PHASES,
            MICRO,
            train.TrainConfig(discriminator="volume+slices"),
            None,
        )


def test_cli_trains_a_3d_discriminator_beside_slice_ones_on_a_volume(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", synthetic.cathode(36, seed=3))
    work = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "v.tif"), "--discriminator", "volume+slices", "--workdir", str(work)]
    args += ["--preset", "slices-tiny", "--steps", "1", "--batch-size", "2", "--slices-per-volume", "2"]
    assert cli.main(args) == 0
    meta = checkpoint.read_metadata(work)
    assert meta["train"]["discriminator"] == "volume+slices" and meta["preset"] == "slices-tiny"
    assert meta["data"]["slices"]["discriminators"] == ["volume", "x", "y", "z"]
    assert "ssa_real" in _log(work)[-1]["eval"]  # the quick evaluation compares with real 3D crops
