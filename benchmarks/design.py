"""Design to order on the committed cathode generator: gradient design vs random search vs Bayesian
optimisation over the latent, at equal budgets of generator + metric evaluations; prints JSON.

    python benchmarks/design.py [--size 64] [--samples 60] [--steps 12] [--bo-evals 20] [--out FILE]

Periodic 64^3 volumes (latent 8^3 x 100). Properties: vf.pore, ssa.nmc, tpb, tau.pore.x, all HARD (the
exact metric of the decoded labels). `--samples` random latents (seeds 1000 + i) give the material's range,
the targets (mean + k std: vf and SSA at k = +-1.5, TPB at -1.5, tau at +1 and -0.5, the combinations vf
-1 with SSA +1 and vf +0.5 with tau -0.3) and the random search: the pool is drawn once and searched per
target (best of the first k), and its kernel density gives the expected evaluations of random search
where the pool holds no hit. Gradient design (`porejax.design.run_design`, Gauss-Newton from the pool's
first latent) through two compiled programs for all targets: vf + SSA + TPB and vf + tau, unused terms
at weight 0. Bayesian optimisation: a GP (RBF kernel on the latent, length scale the median pairwise
distance, noise 1e-6) with expected improvement over the hard objective, maximised over 256 candidates
per step (half fresh N(0, 1) latents, half perturbations z sqrt(1 - s^2) + s e of the incumbent, s in
0.1..0.5), starting from the first 5 pool latents; its evaluations compute only the target's program's
properties. An evaluation = one generator pass + metrics; a gradient step = one evaluation with its
Jacobian (its wall time is reported too). Tolerances: vf 0.005 absolute, SSA 2 %, TPB 3 %, tau 3 %.
The first tau design's latent is checked for exact periodicity: the generator on the 2 x 2 x 2 tiled
latent must give the 2 x 2 x 2 tiled volume.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from porejax import load_generator
from porejax.design import make_problem, run_design

REPO = Path(__file__).resolve().parents[1]
PROPERTIES = ("vf.pore", "ssa.nmc", "tpb", "tau.pore.x")


def _objective(hard: np.ndarray, goal: dict) -> float:
    """Sum of squared errors in tolerance units over the target's properties (the design objective)."""
    return float(sum(((hard[PROPERTIES.index(n)] - v) / tol) ** 2 for n, (v, tol) in goal.items()))


def _met(hard: np.ndarray, goal: dict) -> bool:
    return all(abs(hard[PROPERTIES.index(n)] - v) <= tol for n, (v, tol) in goal.items())


def _tolerance(name: str, value: float) -> float:
    return 0.005 if name.startswith("vf") else (0.02 if name.startswith("ssa") else 0.03) * abs(value)


def _summary(objectives: list[float], hits: list[bool], seconds: list[float], best_hard: np.ndarray, goal) -> dict:
    first = next((i + 1 for i, h in enumerate(hits) if h), None)
    errors = {n: float(best_hard[PROPERTIES.index(n)] - v) for n, (v, _) in goal.items()}
    to_tolerance = None if first is None else float(sum(seconds[:first]))
    return {
        "evaluations": len(objectives),
        "best_objective": float(min(objectives)),
        "reached": first is not None,
        "evaluations_to_tolerance": first,
        "seconds_to_tolerance": to_tolerance,
        "seconds": float(sum(seconds)),
        "final_error": errors,
    }


def _random_search(pool_hard: np.ndarray, pool_s: np.ndarray, goal: dict, budget: int) -> dict:
    objectives = [_objective(h, goal) for h in pool_hard[:budget]]
    hits = [_met(h, goal) for h in pool_hard[:budget]]
    return _summary(objectives, hits, list(pool_s[:budget]), pool_hard[int(np.argmin(objectives))], goal)


def _random_expected_evaluations(pool_hard: np.ndarray, goal: dict) -> float:
    """1 / q: the expected evaluations of random search to the tolerance, q = P(a random latent meets it)
    under a Gaussian kernel density of the pool's values (Scott's bandwidth per property, product kernel),
    so that a pool too small to hold a hit still gives an estimate."""
    cols = [PROPERTIES.index(n) for n in goal]
    x = pool_hard[:, cols]
    x = x[np.all(np.isfinite(x), axis=1)]
    h = x.std(0) * len(x) ** (-1 / (len(cols) + 4))
    q = np.ones(len(x))
    for j, (v, tol) in enumerate(goal.values()):
        q *= norm.cdf((v + tol - x[:, j]) / h[j]) - norm.cdf((v - tol - x[:, j]) / h[j])
    return float(1 / max(q.mean() * len(x) / len(pool_hard), 1e-12))


def _bayesian(
    evaluate,
    pool_z: np.ndarray,
    pool_hard: np.ndarray,
    pool_s: np.ndarray,
    goal: dict,
    evals: int,
    rng: np.random.Generator,
) -> dict:
    zs = [z.reshape(-1) for z in pool_z[:5]]
    hards = list(pool_hard[:5])
    seconds = list(pool_s[:5])
    while len(zs) < evals:
        if any(_met(h, goal) for h in hards):
            break
        x = np.stack(zs).astype(np.float64)
        y = np.log1p(np.array([_objective(h, goal) for h in hards]))
        mu, sd = y.mean(), y.std() + 1e-12
        yn = (y - mu) / sd
        dist = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))
        length = np.median(dist[np.triu_indices(len(x), 1)])
        chol = np.linalg.cholesky(np.exp(-0.5 * (dist / length) ** 2) + 1e-6 * np.eye(len(x)))
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
        best = x[int(np.argmin(y))]
        fresh = rng.standard_normal((128, x.shape[1]))
        s = rng.uniform(0.1, 0.5, (128, 1))
        cand = np.concatenate([fresh, best * np.sqrt(1 - s**2) + s * rng.standard_normal((128, x.shape[1]))])
        k = np.exp(-0.5 * (np.sqrt(np.maximum(((cand[:, None] - x[None]) ** 2).sum(-1), 0)) / length) ** 2)
        mean = k @ alpha
        v = np.linalg.solve(chol, k.T)
        std = np.sqrt(np.maximum(1 - (v**2).sum(0), 1e-12))
        gap = yn.min() - mean
        ei = gap * norm.cdf(gap / std) + std * norm.pdf(gap / std)
        z = cand[int(np.argmax(ei))].astype(np.float32)
        t0 = time.perf_counter()
        hards.append(evaluate(z.reshape(pool_z.shape[1:])))
        seconds.append(time.perf_counter() - t0)
        zs.append(z)
    objectives = [_objective(h, goal) for h in hards]
    return _summary(objectives, [_met(h, goal) for h in hards], seconds, hards[int(np.argmin(objectives))], goal)


def _gradient(problem, goal: dict, steps: int) -> tuple[dict, np.ndarray]:
    """Gradient design from the pool's first latent (seed 1000): its summary and the best latent."""
    names = [t.prop.name for t in problem.terms]
    values = [goal.get(n, (1.0, 0))[0] for n in names]
    weights = [1.0 if n in goal else 0.0 for n in names]
    result = run_design(problem, seed=1000, steps=steps, values=values, weights=weights)
    hard_rows = [np.array([r["hard"].get(n, np.nan) for n in PROPERTIES]) for r in result.history]
    seconds = [r["seconds"] for r in result.history]
    seconds[0] = result.times["median_step_s"]  # compilation reported separately
    objectives = [_objective(h, goal) for h in hard_rows]
    summary = _summary(objectives, [_met(h, goal) for h in hard_rows], seconds, hard_rows[result.step], goal)
    summary["compile_s"] = result.times["compile_s"]
    summary["total_s_with_compile"] = result.times["total_s"]
    summary["latent_statistics"] = result.latent_statistics
    return summary, result.latent


def _tiling(g, z: np.ndarray, size: int) -> dict:
    """The periodic generator on tile(z, 2) against tile(volume of z, 2): max probability difference (float32
    rounding) and whether the decoded labels are identical (the design is exactly periodic)."""
    one = g.probabilities(z, "xyz", size)
    two = g.probabilities(np.tile(z, (2, 2, 2, 1)), "xyz", 2 * size)
    return {
        "max_abs_probability_error": float(np.abs(two - np.tile(one, (2, 2, 2, 1))).max()),
        "labels_identical": bool(np.array_equal(two.argmax(-1), np.tile(one.argmax(-1), (2, 2, 2)))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "experiments/results/cathode/checkpoint")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--bo-evals", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    g = load_generator(args.checkpoint)
    problems = {
        "all": make_problem(g, [f"{n}=1" for n in PROPERTIES], args.size, "xyz"),
        "morphology": make_problem(g, ["vf.pore=0.4", "ssa.nmc=0.5", "tpb=1"], args.size, "xyz"),
        "transport": make_problem(g, ["vf.pore=0.4", "tau.pore.x=2"], args.size, "xyz"),
    }

    def evaluator(problem):
        """z -> hard values of PROPERTIES (nan for those the problem lacks): one generator + metric pass."""
        cols = [PROPERTIES.index(t.prop.name) for t in problem.terms]

        def evaluate(z: np.ndarray) -> np.ndarray:
            out = np.full(len(PROPERTIES), np.nan)
            out[cols] = np.asarray(jax.device_get(problem.hard_program(jnp.asarray(z))), np.float64)
            return out

        return evaluate

    t0 = time.perf_counter()
    pool_z = np.stack([g.latent(1000 + i, problems["all"].latent_shape) for i in range(args.samples)])
    pool_hard, pool_s = [], []
    for z in pool_z:
        t = time.perf_counter()
        pool_hard.append(evaluator(problems["all"])(z))
        pool_s.append(time.perf_counter() - t)
    pool_hard, pool_s = np.stack(pool_hard), np.asarray(pool_s)
    eval_first_s, pool_s[0] = pool_s[0], np.median(pool_s[1:])  # the first call compiles
    pool_time = time.perf_counter() - t0
    finite = np.ma.masked_invalid(pool_hard)  # tau = inf without a spanning path
    mean, std = finite.mean(0).filled(np.nan), finite.std(0).filled(np.nan)
    stats = {
        n: {
            "mean": float(mean[i]),
            "std": float(std[i]),
            "min": float(pool_hard[:, i].min()),
            "max": float(pool_hard[:, i].max()),
            "spanning": int(np.isfinite(pool_hard[:, i]).sum()),
        }
        for i, n in enumerate(PROPERTIES)
    }
    targets = [  # property -> target in standard deviations of the pool from its mean
        {"vf.pore": -1.5},
        {"vf.pore": 1.5},
        {"ssa.nmc": -1.5},
        {"ssa.nmc": 1.5},
        {"tpb": -1.5},
        {"tau.pore.x": 1.0},
        {"tau.pore.x": -0.5},
        {"vf.pore": -1.0, "ssa.nmc": 1.0},
        {"vf.pore": 0.5, "tau.pore.x": -0.3},
    ]
    goals = []
    for target in targets:
        values = {n: float(mean[PROPERTIES.index(n)] + k * std[PROPERTIES.index(n)]) for n, k in target.items()}
        goals.append({n: (v, _tolerance(n, v)) for n, v in values.items()})
    rng = np.random.default_rng(0)
    rows, tiling = [], None
    for goal in goals:
        problem = problems["transport" if "tau.pore.x" in goal else "morphology"]
        gradient, latent = _gradient(problem, goal, args.steps)
        if tiling is None and "tau.pore.x" in goal:
            tiling = _tiling(g, latent, args.size)
        equal_time = max(1, min(args.samples, int(gradient["seconds"] / np.median(pool_s))))
        row = {
            "target": {n: v for n, (v, _) in goal.items()},
            "gradient": gradient,
            "random_equal_evaluations": _random_search(pool_hard, pool_s, goal, gradient["evaluations"]),
            "random_equal_time": _random_search(pool_hard, pool_s, goal, equal_time),
            "random_pool": _random_search(pool_hard, pool_s, goal, args.samples),
            "random_expected_evaluations": _random_expected_evaluations(pool_hard, goal),
            "bayesian": _bayesian(evaluator(problem), pool_z, pool_hard, pool_s, goal, args.bo_evals, rng),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "size": args.size,
        "samples": args.samples,
        "steps": args.steps,
        "bo_evals": args.bo_evals,
        "evaluation_s": float(np.median(pool_s)),
        "evaluation_first_call_s": float(eval_first_s),
        "pool_s": pool_time,
        "total_s": time.perf_counter() - t0,
        "periodic_tiling": tiling,
        "range": stats,
        "rows": rows,
        "load_average": os.getloadavg(),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
