"""porejax.design: parsing and its one-line errors, hard values = porejax.metrics, periodic designs, the CLI."""

import json

import jax
import numpy as np
import pytest
import tifffile
from smooth_generator import smooth_generator

from porejax import presets
from porejax.cli import main
from porejax.design import (
    make_problem,
    parse_property,
    parse_term,
    prior_penalty,
    run_design,
    trust_region_step,
)
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator
from porejax.models import Generator, init_variables
from porejax.volume import PhaseMap


@pytest.fixture(scope="module")
def gen() -> FrozenGenerator:
    config = presets.model("tiny", 3)
    g_vars, _ = init_variables(config, jax.random.PRNGKey(0))
    return FrozenGenerator(config, PhaseMap((0, 85, 170), ("pore", "nmc", "cbd"), 0.5), g_vars)


def test_names_labels_axes(gen):
    assert parse_property("vf.pore", gen) == parse_property("vf.0", gen)
    tau = parse_property("tau.nmc.z", gen)
    assert (tau.kind, tau.phases, tau.axis) == ("tau", (1,), 2)
    assert parse_property("tpb", gen).phases == (0, 1, 2)
    term = parse_term("tau.pore.x<=2.0", gen)
    assert (term.relation, term.value) == ("<=", 2.0)


@pytest.mark.parametrize(
    "terms, message",
    [
        (["vf.binder=0.3"], "unknown phase 'binder'"),
        (["vf.7=0.3"], "unknown phase '7'"),
        (["tau.pore.w<=2"], "unknown axis 'w'"),
        (["porosity.pore=0.3"], "unknown property 'porosity'"),
        (["vf.pore~0.3"], "malformed target"),
        (["tau.pore=2"], "malformed property"),
        (["vf.pore=1.3"], "impossible"),
        (["tau.pore.x<=0.5"], "impossible"),
        (["vf.pore=0.3", "vf.pore=0.4"], "contradict"),
        (["ssa.nmc>=2", "ssa.nmc<=1"], "contradict"),
        (["vf.pore=0.6", "vf.nmc=0.6"], "sum to 1.2"),
        ([], "nothing to design"),
    ],
)
def test_one_line_errors(gen, terms, message):
    with pytest.raises(PorejaxError, match=message):
        make_problem(gen, terms, size=16, periodic="xyz")


def test_prior_is_zero_at_normal_moments_and_grows_with_scale():
    z = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
    assert float(prior_penalty(z)) < 1e-3
    assert float(prior_penalty(1.5 * z)) > 0.7  # variance 2.25: (1.25)^2 / 2 alone


def test_trust_region_step_is_the_damped_least_squares_step():
    rng = np.random.default_rng(0)
    r, jac = rng.normal(size=5), rng.normal(size=(5, 40))
    free, predicted = trust_region_step(r, jac, radius=1e6)  # inside the region: the minimum-norm solution
    np.testing.assert_allclose(free, -np.linalg.pinv(jac) @ r, rtol=1e-6, atol=1e-9)
    assert predicted == pytest.approx(0.0, abs=1e-9)
    radius = 0.3 * np.linalg.norm(free)
    d, predicted = trust_region_step(r, jac, radius)
    assert np.linalg.norm(d) == pytest.approx(radius, rel=1e-6)
    a = np.linalg.lstsq(jac.T, -d, rcond=None)[0]  # d = -J^T a with (J J^T + lam I) a = r for one lam > 0
    lam = float((r - jac @ jac.T @ a) @ a / (a @ a))
    assert lam > 0
    np.testing.assert_allclose((jac @ jac.T + lam * np.eye(5)) @ a, r, rtol=1e-5, atol=1e-8)
    assert predicted == pytest.approx(float(np.sum((r + jac @ d) ** 2)), rel=1e-6)


def test_step_jacobian_gives_the_objective_gradient(gen):
    problem = make_problem(gen, ["vf.pore=0.36", "ssa.nmc>=0.9"], 16, "xyz", maximise=["tpb"], prior_weight=2.0)
    z = jax.numpy.asarray(gen.latent(1, problem.latent_shape) * 1.2)
    goals = problem.goals()
    ev = problem.step_program(z, goals)

    def loss(z):
        soft, hard = problem.soft_and_hard_values(problem.probabilities(z))
        return problem.objective(soft + jax.lax.stop_gradient(hard - soft), z, goals)

    expected = jax.grad(loss)(z)
    np.testing.assert_allclose(ev.gradient(), expected, rtol=1e-3, atol=1e-3 * float(np.abs(expected).max()))
    assert float(ev.objective) == pytest.approx(float(loss(z)), rel=1e-5)


def test_gauss_newton_keeps_the_best_and_stops_when_the_smallest_step_fails():
    # a structured untrained generator: its soft values (about 1/3) say little about its hard ones, so the
    # Gauss-Newton steps soon fail; the run must end there rather than repeat the same evaluation
    problem = make_problem(smooth_generator(), ["vf.0=0.45"], size=16, periodic="")
    result = run_design(problem, seed=2, steps=20)
    objectives = [r["hard_objective"] for r in result.history]
    assert not result.reached and len(result.history) < 21
    assert objectives[result.step] == min(objectives) < objectives[0] and objectives[-1] > min(objectives)
    assert result.hard["vf.0"] == pytest.approx(result.history[result.step]["hard"]["vf.0"])


def test_periodic_design_hard_values_and_tiling(gen):
    problem = make_problem(gen, ["vf.pore=0.36", "ssa.nmc>=0.1", "tpb>=0"], size=16, periodic="xyz")
    result = run_design(problem, seed=3, steps=3)
    # the hard values the run reports are porejax.metrics on the decoded labels
    for name, value in result.history[result.step]["hard"].items():
        assert value == pytest.approx(result.hard[name], rel=2e-3)
    assert set(np.unique(result.labels).tolist()) <= {0, 85, 170}
    # periodic: the design is the central crop of the zero-padded generator on the tiled latent (5 tiles:
    # the tiny generator's receptive field needs 3 latent voxels of wrap on each side of this 2^3 latent)
    z = result.latent
    tiled = np.tile(z, (5, 5, 5, 1))
    full = Generator(gen.config).apply(gen.variables, tiled[None], train=False)[0]
    n, f = result.labels.shape[0], full.shape[0]
    crop = np.asarray(full)[(slice((f - n) // 2, (f - n) // 2 + n),) * 3]
    np.testing.assert_allclose(np.asarray(problem.probabilities(jax.numpy.asarray(z))), crop, atol=1e-5)


def test_cli_writes_the_design(tmp_path):
    ck = tmp_path / "ck"
    assert (
        main(
            [
                "init",
                "--workdir",
                str(ck),
                "--preset",
                "tiny",
                "--labels",
                "0,85,170",
                "--names",
                "pore,nmc,cbd",
                "--voxel-size",
                "0.5",
            ]
        )
        == 0
    )
    out = tmp_path / "design"
    assert (
        main(
            [
                "design",
                "--checkpoint",
                str(ck),
                "--size",
                "16",
                "--periodic",
                "xyz",
                "--target",
                "vf.pore=0.3",
                "--maximise",
                "ssa.nmc",
                "--steps",
                "2",
                "--samples",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "design.json").read_text())
    assert record["terms"] == ["vf.pore=0.3", "maximise ssa.nmc"]
    assert len(record["history"]) == 3 and set(record["history"][0]["hard"]) == {"vf.pore", "ssa.nmc"}
    assert {"start", "design", "unconstrained_samples_range"} <= set(record["latent_statistics"])
    assert tifffile.imread(out / "design.tif").shape == (16, 16, 16)
    assert np.load(out / "latent.npy").shape[:3] == (2, 2, 2)
    assert (out / "design.png").stat().st_size > 10_000
    assert (
        main(["design", "--checkpoint", str(ck), "--size", "16", "--target", "vf.binder=0.3", "--out", str(out)]) == 2
    )
