"""Training: the paper's recipe, resumable with an identical trajectory, data parallel, usable checkpoints."""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tifffile

import porejax
from porejax import checkpoint, cli, host, latents, losses, presets, standing, synthetic, train
from porejax.errors import PorejaxError
from porejax.models import ModelConfig, init_variables
from porejax.volume import PhaseMap

MICRO = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4,))  # 8^3 crops: compiles fast
PHASES = PhaseMap((0, 85, 170), ("pore", "nmc", "binder"), 0.5)
QUIET = dict(log_every=1, eval_every=1000, checkpoint_every=2, eval_samples=2, standing_batches=2, batch_size=4)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return synthetic.cathode(12, seed=0)


def _log(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / train.LOG_FILE).read_text().splitlines()]


def _losses(records) -> list[tuple]:
    return [(r["step"], r["loss_d"], r["loss_g"], r["d_real"], r["d_fake"]) for r in records]


def _state(workdir, config, model=MICRO):
    target = jax.eval_shape(lambda: train.init_state(model, config.resolved())).to_dict()
    return checkpoint.restore_state(workdir, target)[0]


def test_cli_tiny_run_checkpoints_and_generates(tmp_path, monkeypatch):
    allocator_calls = []  # `train` sets up the allocator (tests/test_host.py; not applied to this process)
    monkeypatch.setattr(host, "reuse_freed_memory", lambda: allocator_calls.append("train") or True)
    data = tmp_path / "cathode.tif"
    tifffile.imwrite(data, synthetic.cathode(40, seed=1))
    work = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(data),
        "--workdir",
        str(work),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--log-every",
        "1",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--voxel-size",
        "0.4",
        "--precision",
        "bfloat16",
    ]  # mixed precision end to end (the float32 path: every other test)
    assert cli.main(args) == 0
    records = _log(work)
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r[k]) for r in records for k in ("loss_d", "loss_g", "d_real", "d_fake", "time"))
    assert set(records[-1]["eval"]) >= {"vf", "vf_real", "ssa", "ssa_real"}
    assert (work / "samples" / "step_000002.png").stat().st_size > 0
    assert checkpoint.steps(work) == [2]
    meta = checkpoint.read_metadata(work)
    assert meta["train"]["batch_size"] == 8 and meta["data"]["volumes"][0]["labels"] == [0, 85, 170]
    assert meta["model"]["compute_dtype"] == "bfloat16" and meta["train"]["latent"] == "periodic"
    assert cli.main(args) == 2  # a workdir holding a run is refused without --resume
    assert allocator_calls == ["train", "train"]

    out = tmp_path / "gen.tif"
    assert cli.main(["generate", "--checkpoint", str(work), "--size", "40", "--out", str(out)]) == 0
    generated = tifffile.imread(out)
    assert generated.shape == (40, 40, 40) and set(np.unique(generated)) <= {0, 85, 170}
    assert allocator_calls == ["train", "train"]  # generation keeps the default allocator (bounded memory)


def test_resume_follows_the_uninterrupted_trajectory(tmp_path, volume):
    config = train.TrainConfig(steps=4, **QUIET)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train([volume], PHASES, straight, MICRO, config, progress=False)
    train.train([volume], PHASES, split, MICRO, dataclasses.replace(config, steps=2), progress=False)
    train.train([volume], PHASES, split, MICRO, config, resume=True, progress=False)
    assert _losses(_log(split)) == _losses(_log(straight))
    a, b = _state(straight, config), _state(split, config)
    chex.assert_trees_all_equal(a, b)
    # k = 2 generator updates per discriminator update: Adam's step counters after 4 steps
    assert int(a["g_opt"][0].count) == 8 and int(a["d_opt"][0].count) == 4 and int(a["step"]) == 4


def test_checkpoints_beyond_the_newest_three_are_kept_at_multiples_of_keep_every(tmp_path, volume):
    config = train.TrainConfig(steps=6, **QUIET)  # a checkpoint every 2 steps
    train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    assert checkpoint.steps(tmp_path) == [2, 4, 6]
    # keep_every is cadence: a resumed run may set it
    train.train(
        [volume],
        PHASES,
        tmp_path,
        MICRO,
        dataclasses.replace(config, steps=12, keep_every=4),
        resume=True,
        progress=False,
    )
    assert checkpoint.steps(tmp_path) == [4, 8, 10, 12]
    with pytest.raises(PorejaxError, match="keep-every"):
        train.TrainConfig(keep_every=-1)
    # any kept step can be used: `--step` of generate (and compare)
    out = tmp_path / "step4.tif"
    assert (
        cli.main(["generate", "--checkpoint", str(tmp_path), "--step", "4", "--latent-size", "5", "--out", str(out)])
        == 0
    )
    z = porejax.load_generator(tmp_path).latent(0, (5, 5, 5))
    np.testing.assert_array_equal(tifffile.imread(out), porejax.load_generator(tmp_path, 4).labels(z))
    assert not np.array_equal(tifffile.imread(out), porejax.load_generator(tmp_path).labels(z))
    with pytest.raises(PorejaxError, match=r"no saved step 6; its saved steps are \[4, 8, 10, 12\]"):
        porejax.load_generator(tmp_path, 6)


def test_resume_refuses_a_different_recipe_or_data(tmp_path, volume):
    config = train.TrainConfig(steps=2, **QUIET)
    train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    with pytest.raises(PorejaxError, match="batch_size 4 vs now 8"):
        train.train([volume], PHASES, tmp_path, MICRO, dataclasses.replace(config, batch_size=8), resume=True)
    with pytest.raises(PorejaxError, match="training data differ"):
        train.train([volume[::-1].copy()], PHASES, tmp_path, MICRO, config, resume=True)


def test_resume_may_change_the_learning_rate_and_records_it(tmp_path, volume):
    config = train.TrainConfig(steps=2, **QUIET)
    train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    before = _state(tmp_path, config)
    slow = dataclasses.replace(config, steps=4, lr=1e-12)  # Adam moves each weight by about lr per step
    train.train([volume], PHASES, tmp_path, MICRO, slow, resume=True, progress=False)
    after = _state(tmp_path, slow)
    assert int(after["step"]) == 4 and int(after["g_opt"][0].count) == 8
    for key in ("g_params", "d_params"):
        moved = jax.tree_util.tree_map(
            lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), before[key], after[key]
        )
        assert max(jax.tree_util.tree_leaves(moved)) < 1e-9
    assert checkpoint.read_metadata(tmp_path)["lr_history"] == [[0, 2e-5], [2, 1e-12]]


def test_the_generator_s_moving_average_may_start_on_resume_and_does_not_change_training(tmp_path, volume):
    config = train.TrainConfig(steps=5, **{**QUIET, "checkpoint_every": 1, "keep_every": 1})
    plain, averaged = tmp_path / "plain", tmp_path / "averaged"
    train.train([volume], PHASES, plain, MICRO, config, progress=False)
    train.train([volume], PHASES, averaged, MICRO, dataclasses.replace(config, steps=2), progress=False)
    ema = dataclasses.replace(config, steps=4, ema_decay=0.5)
    train.train([volume], PHASES, averaged, MICRO, ema, resume=True, progress=False)
    train.train([volume], PHASES, averaged, MICRO, dataclasses.replace(ema, steps=5), resume=True, progress=False)
    assert _losses(_log(averaged)) == _losses(_log(plain))  # the average does not feed back into training
    target = jax.eval_shape(lambda: train.init_state(MICRO, config.resolved())).to_dict()
    weights = {s: checkpoint.restore_state(plain, target, s)[0]["g_params"] for s in (2, 3, 4, 5)}
    expected = weights[2]  # the average starts from the weights of the step it was switched on at
    for step in (3, 4, 5):  # rate min(0.5, (1 + step) / (10 + step)): 4/13, 5/14, 6/15
        expected = train.ema_update(expected, weights[step], 0.5, step)
    state = _state(averaged, ema)
    assert "g_ema" not in _state(plain, config) and int(state["step"]) == 5
    chex.assert_trees_all_close(state["g_ema"], expected, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_equal(state["g_params"], weights[5])
    # generation uses the average, with standing statistics of the averaged weights
    _, frozen, _ = checkpoint.restore_generator(averaged)
    chex.assert_trees_all_equal(frozen["params"], state["g_ema"])
    devices = len(jax.devices())  # the run's mesh: all devices
    side, periodic, batch = latents.statistics_latent(MICRO, config.latent, config.batch_size, devices)
    expected = standing.standing_statistics(
        MICRO,
        state["g_ema"],
        state["g_stats"],
        jax.random.fold_in(jax.random.PRNGKey(config.seed), 5),
        side=side,
        periodic=periodic,
        batch=batch,
        batches=config.standing_batches,
    )
    chex.assert_trees_all_close(frozen["batch_stats"], expected, rtol=1e-5, atol=1e-7)
    assert checkpoint.read_metadata(averaged)["ema_decay_history"] == [[0, 0.0], [2, 0.5]]
    leaf = train.ema_update({"w": jnp.ones(())}, {"w": jnp.zeros(())}, 0.999, 1)["w"]
    assert float(leaf) == pytest.approx(2 / 11)  # early steps fade quickly ...
    leaf = train.ema_update({"w": jnp.ones(())}, {"w": jnp.zeros(())}, 0.999, 10**6)["w"]
    assert float(leaf) == pytest.approx(0.999)  # ... then the decay holds
    with pytest.raises(PorejaxError, match="ema-decay must be in"):
        train.TrainConfig(ema_decay=1.0)


def test_a_generator_with_an_output_head_trains_and_generates(tmp_path, volume):
    model = dataclasses.replace(MICRO, head_width=2)
    train.train([volume], PHASES, tmp_path, model, train.TrainConfig(steps=2, **QUIET), progress=False)
    meta, variables, _ = checkpoint.restore_generator(tmp_path)
    assert meta["model"]["head_width"] == 2 and variables["params"]["deconv2"]["kernel"].shape == (3, 3, 3, 2, 3)
    fresh = init_variables(model, jax.random.PRNGKey(0))[0]["params"]["deconv2"]["kernel"]
    assert not np.allclose(variables["params"]["deconv2"]["kernel"], fresh)  # the head is trained
    labels = porejax.load_generator(tmp_path).labels(np.zeros((4, 4, 4, 4), np.float32) + 0.5, "xyz")
    assert labels.shape == (8, 8, 8) and set(np.unique(labels)) <= set(PHASES.labels)


def test_two_devices_give_the_losses_of_one_for_the_same_global_batch(tmp_path, volume):
    assert len(jax.devices()) == 2, "tests/conftest.py fakes two CPU devices"
    config = train.TrainConfig(steps=2, **QUIET)
    runs = {}
    for n in (1, 2):
        train.train([volume], PHASES, tmp_path / str(n), MICRO, config, devices=jax.devices()[:n], progress=False)
        runs[n] = np.array([r[1:] for r in _losses(_log(tmp_path / str(n)))])
    np.testing.assert_allclose(runs[2], runs[1], rtol=2e-4, atol=1e-5)


def test_a_generator_update_lowers_its_loss_against_a_frozen_discriminator():
    g_vars, d_vars = init_variables(MICRO, jax.random.PRNGKey(0))
    config = train.TrainConfig(batch_size=4, lr=1e-3, b1=0.5).resolved()
    mesh = train.make_mesh(jax.devices()[:1])
    ctx = train.StepContext(MICRO, config, train.VolumeJudge(MICRO, None, mesh), mesh)
    tx = optax.adam(1e-3, b1=0.5)
    carry = (g_vars["params"], g_vars["batch_stats"], tx.init(g_vars["params"]), d_vars["batch_stats"])
    key = jax.random.PRNGKey(1)  # the same latents for both updates
    update = jax.jit(lambda c: train.generator_update(ctx, losses.bce_generator, d_vars["params"], c, key))
    carry, (before, _) = update(carry)
    _, (after, _) = update(carry)  # the loss the updated generator gets from the same D on the same z
    assert float(after) < float(before)


def test_the_r1_penalty_adds_gamma_half_of_the_real_batch_s_squared_input_gradient():
    _, d_vars = init_variables(MICRO, jax.random.PRNGKey(0))
    mesh = train.make_mesh(jax.devices()[:1])
    real, fake = jax.random.uniform(jax.random.PRNGKey(3), (2, 4, 8, 8, 8, 3))
    params, stats = d_vars["params"], d_vars["batch_stats"]
    loss = {}
    for gamma in (0.0, 4.0):
        config = train.TrainConfig(batch_size=4, r1_weight=gamma).resolved()
        ctx = train.StepContext(MICRO, config, train.VolumeJudge(MICRO, None, mesh), mesh)
        loss[gamma] = float(train.steps._bce_discriminator_loss(ctx, stats, [real], [fake], params)[0])
    judge = train.VolumeJudge(MICRO, None, mesh)
    penalty = losses.r1_penalty(lambda x: judge.apply(params, stats, 0, x)[0], real)
    assert float(penalty) > 0
    np.testing.assert_allclose(loss[4.0] - loss[0.0], 2.0 * float(penalty), rtol=1e-4)
    with pytest.raises(PorejaxError, match="r1 must be 0 .* with --loss bce"):
        train.TrainConfig(loss="wgan-gp", r1_weight=1.0)


def test_wgan_gp_runs_n_critic_updates_per_generator_update(tmp_path, volume):
    config = train.TrainConfig(loss="wgan-gp", steps=2, **QUIET)
    summary = train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)
    assert checkpoint.read_metadata(tmp_path)["model"]["d_norm"] == "layer"  # no batch statistics in the critic
    assert summary["metrics"]["gp"] > 0
    state = _state(tmp_path, config, dataclasses.replace(MICRO, d_norm="layer"))
    assert int(state["d_opt"][0].count) == 10 and int(state["g_opt"][0].count) == 2


def test_non_finite_losses_stop_training_and_name_the_last_checkpoint(tmp_path, volume, monkeypatch):
    compile_step = train.loop.compile_step

    def poisoned_at_step_3(*args):
        step_fn = compile_step(*args)

        def run(state, arrays):
            state, metrics = step_fn(state, arrays)
            return state, {**metrics, "loss_g": jnp.where(state.step >= 3, jnp.nan, metrics["loss_g"])}

        return run

    monkeypatch.setattr(train.loop, "compile_step", poisoned_at_step_3)
    with pytest.raises(
        PorejaxError, match=r"non-finite loss at step 3 \(.*loss_g=nan.*last good checkpoint: step 2 in"
    ):
        # steps between logs are read from the device together (at step 4's save): the first bad one is named
        config = train.TrainConfig(steps=6, **{**QUIET, "log_every": 5})
        train.train([volume], PHASES, tmp_path, MICRO, config, progress=False)


def test_a_crop_other_than_the_model_s_is_refused():
    with pytest.raises(PorejaxError, match="--crop 64 does not match the tiny preset"):
        presets.model("tiny", 3, crop=64)


def test_a_deeper_discriminator_trains_on_periodic_latents_and_refuses_point_latents(tmp_path):
    model = ModelConfig(latent_channels=4, g_widths=(4,), d_widths=(4, 4))  # G period unit 2, D 16^3 crops
    assert latents.training_latent(model, "periodic") == (8, (True, True, True))
    # standing statistics: periodic latents twice the training side, about a training batch's voxels
    assert latents.statistics_latent(model, "periodic", batch_size=32, devices=2) == (16, (True, True, True), 4)
    assert latents.statistics_latent(model, "periodic", batch_size=8, devices=2) == (16, (True, True, True), 2)
    assert latents.statistics_latent(MICRO, "point", batch_size=8) == (1, (False, False, False), 8)
    with pytest.raises(PorejaxError, match="point .* latents make 8\\^3 volumes but this discriminator judges 16"):
        latents.training_latent(model, "point")
    summary = train.train(
        [synthetic.cathode(20, seed=1)], PHASES, tmp_path, model, train.TrainConfig(steps=2, **QUIET), progress=False
    )
    assert summary["step"] == 2 and np.isfinite(summary["metrics"]["loss_g"])


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_the_discriminator_warmup_keeps_the_generator_then_trains_both_and_resumes(tmp_path, volume, loss):
    config = train.TrainConfig(loss=loss, steps=3, discriminator_warmup=2, **{**QUIET, "checkpoint_every": 1})
    train.train([volume], PHASES, tmp_path / "a", MICRO, config, progress=False)
    start = train.init_state(MICRO, config.resolved())
    target = jax.eval_shape(lambda: start).to_dict()
    saved = {s: checkpoint.restore_state(tmp_path / "a", target, s)[0] for s in (1, 2, 3)}
    for step in (1, 2):  # warm-up: the discriminator learns, the generator stays as it was
        chex.assert_trees_all_equal(saved[step]["g_params"], start.g_params)
        assert not np.allclose(*(jax.tree_util.tree_leaves(t)[0] for t in (saved[step]["d_params"], start.d_params)))
    moved = jax.tree_util.tree_leaves(saved[3]["g_params"])[0], jax.tree_util.tree_leaves(start.g_params)[0]
    assert not np.allclose(*moved)  # then both train
    assert all(np.isfinite(r["loss_g"]) for r in _log(tmp_path / "a"))
    train.train([volume], PHASES, tmp_path / "b", MICRO, dataclasses.replace(config, steps=1), progress=False)
    train.train([volume], PHASES, tmp_path / "b", MICRO, config, resume=True, progress=False)
    assert _losses(_log(tmp_path / "b")) == _losses(_log(tmp_path / "a"))  # resumed inside the warm-up
    with pytest.raises(PorejaxError, match="discriminator-warmup must be 0 \\(off\\) or a number of steps, got -1"):
        train.TrainConfig(discriminator_warmup=-1)


def test_a_new_run_can_start_from_another_run_s_generator(tmp_path, volume):
    train.train([volume], PHASES, tmp_path / "a", MICRO, train.TrainConfig(steps=2, **QUIET), progress=False)
    _, source, _ = checkpoint.restore_generator(tmp_path / "a")
    deeper = dataclasses.replace(MICRO, d_widths=(4, 4))
    config = train.TrainConfig(steps=1, lr=1e-9, **QUIET)  # a step that barely moves the weights
    train.train(
        [synthetic.cathode(20, seed=1)],
        PHASES,
        tmp_path / "b",
        deeper,
        config,
        generator_from=tmp_path / "a",
        progress=False,
    )
    assert checkpoint.read_metadata(tmp_path / "b")["warm_start"] == {"checkpoint": str(tmp_path / "a"), "step": 2}
    started = _state(tmp_path / "b", config, deeper)["g_params"]
    fresh = init_variables(deeper, jax.random.PRNGKey(0))[0]["params"]
    for got, want, other in zip(*(jax.tree_util.tree_leaves(t) for t in (started, source["params"], fresh))):
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert not np.allclose(want, other, atol=1e-6)
    for other in (dataclasses.replace(MICRO, g_widths=(8,)), dataclasses.replace(MICRO, head_width=4)):
        with pytest.raises(PorejaxError, match="cannot start from the generator .* layers .*\\(4, 4, 1, 0\\)"):
            train.train([volume], PHASES, tmp_path / "c", other, config, generator_from=tmp_path / "a", progress=False)
