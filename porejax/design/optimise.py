"""The design optimisation: Gauss-Newton steps in a trust region for targets and bounds, Adam for maximise /
minimise (see the package docstring), from a start latent to the best hard result."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from porejax.design.prior import latent_statistics
from porejax.design.problem import Problem, Step, measure
from porejax.errors import PorejaxError


@dataclasses.dataclass
class DesignResult:
    """Best design (lowest hard objective among steps meeting every target and bound, else overall)."""

    latent: np.ndarray  # (A, A, A, C) float32
    labels: np.ndarray  # (D, H, W) original label values
    hard: dict[str, float]  # porejax.metrics on `labels`, by property name
    step: int  # the step it came from (0: the start latent)
    reached: bool  # every target and bound met
    history: list[dict]  # per step: objective, hard and soft values, hard objective, seconds
    times: dict[str, float]  # first_step_s, median_step_s, compile_s (their difference), total_s
    latent_statistics: dict


def trust_region_step(residuals: np.ndarray, jacobian: np.ndarray, radius: float) -> tuple[np.ndarray, float]:
    """Levenberg-Marquardt step of the least-squares objective |r|^2 within a trust radius.

    residuals r (R,), jacobian J (R, N). The step d = -J^T (J J^T + lam I)^-1 r is the smallest change of the
    latent minimising |r + J d|^2 + lam |d|^2; lam >= 0 is the least that keeps |d| <= radius (found by
    bisection on the eigenvalues of the R x R matrix J J^T, R small). Returns (d (N,), predicted |r + J d|^2).
    """
    r, jac = np.asarray(residuals, np.float64), np.asarray(jacobian, np.float64)
    s, u = np.linalg.eigh(jac @ jac.T)
    s = np.maximum(s, 0)
    rr = u.T @ r
    floor = 1e-9 * max(float(s.max()), 1e-30)

    def norm2(lam: float) -> float:
        return float(np.sum(s * rr**2 / (s + lam) ** 2))

    lo, hi = floor, max(floor, float(np.sqrt(np.sum(s * rr**2))) / max(radius, 1e-30))
    if norm2(lo) > radius**2:
        while norm2(hi) > radius**2:
            hi *= 2
        for _ in range(60):
            mid = np.sqrt(lo * hi)
            lo, hi = (mid, hi) if norm2(mid) > radius**2 else (lo, mid)
        lo = hi
    a = u @ (rr / (s + lo))
    predicted = float(np.sum((lo * a) ** 2))
    return -(jac.T @ a), predicted


TRUST_RADIUS = (0.3, 0.02, 1.0)  # Gauss-Newton trust radius in RMS change per latent entry: start, min, max


class _Best(NamedTuple):
    """The best evaluation so far: key (infeasible, hard objective), its step, latent and evaluation."""

    key: tuple[bool, float]
    step: int
    z: np.ndarray
    ev: Step


def _adapt_radius(radius: float, rms: float, best: float, objective: float, predicted: float) -> tuple[float, bool]:
    """The trust radius after a step that took the hard objective from `best` to `objective` where the
    linear model predicted `predicted`: doubled when it gained at least half the predicted amount, kept
    for a smaller gain, quartered for a loss; and whether that loss came at the smallest radius (stalled)."""
    gain = (best - objective) / max(best - predicted, 1e-12)
    stalled = gain <= 0 and radius <= TRUST_RADIUS[1] * rms
    radius = radius * (2.0 if gain >= 0.5 else 1.0 if gain > 0 else 0.25)
    return min(max(radius, TRUST_RADIUS[1] * rms), TRUST_RADIUS[2] * rms), stalled


def _record(step: int, ev: Step, names: list[str], feasible: bool, seconds: float) -> dict:
    """One history entry: objectives, hard and soft values by property name, feasibility, seconds."""
    return {
        "step": step,
        "objective": float(ev.objective),
        "hard_objective": float(ev.hard_objective),
        "hard": dict(zip(names, map(float, ev.hard))),
        "soft": dict(zip(names, map(float, ev.soft))),
        "feasible": feasible,
        "seconds": seconds,
    }


def _progress_line(record: dict, steps: int) -> str:
    shown = "  ".join(f"{n} {v:.4g} (soft {record['soft'][n]:.4g})" for n, v in record["hard"].items())
    return (
        f"step {record['step']}/{steps}  objective {record['hard_objective']:.4g}  {shown}  {record['seconds']:.1f} s"
    )


def _result(problem: Problem, best: _Best, history: list[dict], start: float) -> DesignResult:
    """The DesignResult of the best evaluation: decoded labels, their hard metrics, times."""
    pm = problem.generator.phase_map
    labels = np.asarray(pm.labels, pm.label_dtype)[best.ev.indices]
    step_s = float(np.median([r["seconds"] for r in history[1:]])) if len(history) > 1 else 0.0
    times = {
        "first_step_s": history[0]["seconds"],
        "median_step_s": step_s,
        "compile_s": max(0.0, history[0]["seconds"] - step_s),
        "total_s": time.perf_counter() - start,
    }
    reached = not best.key[0]
    return DesignResult(
        best.z, labels, measure(problem, labels), best.step, reached, history, times, latent_statistics(best.z)
    )


def run_design(
    problem: Problem,
    seed: int = 0,
    steps: int = 100,
    learning_rate: float = 0.01,
    latent: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    values: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
) -> DesignResult:
    """Optimise the latent from `latent` (default: the standard-normal latent of `seed`) for at most `steps`
    steps; stops early once every target is within tolerance and every bound holds (no max / min terms).

    Targets and bounds only: the objective is a sum of squares |r|^2 (`Problem.residuals`), minimised by
    Gauss-Newton steps in a trust region (`trust_region_step`) from the best latent so far: a step that
    lowers the hard objective by at least half the predicted amount doubles the radius, one that raises it
    is undone and the radius quartered; the run ends when a step of the smallest radius fails (the soft
    derivatives no longer point the hard values the right way). Each step is one generator + metric
    evaluation. With maximise / minimise terms the objective has no least-squares form: Adam (optax) with
    `learning_rate` on its gradient. values, weights: see `Problem.goals`."""
    if int(steps) < 1:
        raise PorejaxError(f"steps must be at least 1, got {steps}")
    start = time.perf_counter()
    z = np.asarray(problem.generator.latent(seed, problem.latent_shape) if latent is None else latent, np.float32)
    goals = problem.goals(values, weights)
    optimising = any(t.relation in ("max", "min") for t in problem.terms)
    if optimising:  # scale them by their start values
        goals = problem.goals(values, weights, jax.device_get(problem.step_program(jnp.asarray(z), goals)).hard)
    optimiser = optax.adam(learning_rate)
    opt_state = optimiser.init(jnp.asarray(z))
    names = [t.prop.name for t in problem.terms]
    rms = math.sqrt(z.size)
    radius, predicted = TRUST_RADIUS[0] * rms, None
    history: list[dict] = []
    best: _Best | None = None
    for step in range(int(steps) + 1):
        t0 = time.perf_counter()
        ev = jax.device_get(problem.step_program(jnp.asarray(z), goals))
        seconds = time.perf_counter() - t0
        feasible, done = problem.met(ev.hard, goals)
        history.append(_record(step, ev, names, feasible, seconds))
        if progress is not None:
            progress(_progress_line(history[-1], steps))
        stalled, key = False, (not feasible, history[-1]["hard_objective"])
        if predicted is not None:  # adapt the trust radius to the Gauss-Newton step just taken
            radius, stalled = _adapt_radius(radius, rms, best.key[1], key[1], predicted)
        if best is None or key < best.key:
            best = _Best(key, step, z, ev)
        if done or stalled or step == steps:
            break
        if optimising:
            updates, opt_state = optimiser.update(jnp.asarray(ev.gradient()), opt_state, jnp.asarray(z))
            z = np.asarray(optax.apply_updates(jnp.asarray(z), updates))
        else:
            delta, predicted = trust_region_step(
                best.ev.residuals, best.ev.jacobian.reshape(len(best.ev.residuals), -1), radius
            )
            z = (best.z + delta.reshape(z.shape)).astype(np.float32)
    return _result(problem, best, history, start)
