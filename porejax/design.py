"""Design to order: optimise the latent of a frozen generator for target properties.

A design problem is a list of terms on properties of the generated volume:
- properties: `vf.PHASE`, `ssa.PHASE` (1/um), `tpb` (1/um^2; the three phases of a three-phase generator,
  else `tpb.A+B+C`), `tau.PHASE.AXIS` and `drel.PHASE.AXIS` (tortuosity factor, D_eff / D0); PHASE is a
  phase name of the checkpoint or its label value (`vf.pore`, `vf.0`), AXIS is x, y or z (array axes 0-2);
- terms: targets `NAME=VALUE`, bounds `NAME<=VALUE` / `NAME>=VALUE`, and `maximise` / `minimise` NAME (the
  targets and bounds then act as constraints).

The objective is differentiable end to end: latent z (A, A, A, C) -> generator (frozen BatchNorm
statistics, circular padding on periodic axes) -> phase probabilities p (D, H, W, P) -> soft estimators
(porejax.metrics.soft, porejax.metrics.soft_diffusion). Each property enters as its HARD value (the exact
metric of the decoded labels argmax p) with the gradient of its soft value (v = soft + stop_gradient(hard -
soft)): the optimiser then drives the decoded volume itself to the target, while the soft estimators, equal
to the hard metrics on one-hot p, supply the direction. Terms are measured in units of their tolerance
(vf 0.005 absolute, SSA 2 %, TPB 3 %, tau and D_rel 3 %): a target contributes ((v - t) / tol)^2, a
violated bound the same of its excess, maximise -v / |v0| (v0: the start value). A prior keeps the latent
typical of the N(0, 1) latents the generator was trained on: `prior_weight` times the squared deviations of
the first four moments of z's entries from N(0, 1)'s (0, 1, 0, 3), each divided by its sampling variance.

Without maximise / minimise terms the objective is a sum of squares |r|^2 (targets, violated bounds and the
prior's moments as residuals r), so `run_design` takes Gauss-Newton steps: the Jacobian of the K property
values costs K reverse passes through the generator, batched, and the smallest latent change that fits
the linearised residuals within a trust radius is one small R x R solve (R = K + 4).

SSA and TPB count the wrap-around faces when the design is periodic in all three axes; tortuosity along an
axis uses periodic side faces when both other axes are periodic, mirror sides otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from porejax import metrics
from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator, parse_periodic
from porejax.metrics.soft import (
    soft_specific_surface_area,
    soft_tpb_density,
    soft_volume_fraction,
)
from porejax.metrics.soft_diffusion import soft_relative_diffusivity

KINDS = ("vf", "ssa", "tpb", "tau", "drel")
TOLERANCE = {
    "vf": (0.005, "absolute"),
    "ssa": (0.02, "relative"),
    "tpb": (0.03, "relative"),
    "tau": (0.03, "relative"),
    "drel": (0.03, "relative"),
}
RELATIONS = ("=", "<=", ">=", "max", "min")
_TERM = re.compile(r"^\s*([A-Za-z0-9_.+\-]+?)\s*(<=|>=|=)\s*([-+0-9.eE]+)\s*$")
_MOMENTS = ((1, 0.0, 1.0), (2, 1.0, 2.0), (3, 0.0, 15.0), (4, 3.0, 96.0))  # (k, E z^k, Var z^k) for N(0, 1)


@dataclasses.dataclass(frozen=True)
class Property:
    """A property of a volume: kind (KINDS), phase indices (one, or three for tpb), axis (tau / drel)."""

    kind: str
    phases: tuple[int, ...]
    axis: int | None
    name: str = dataclasses.field(compare=False)  # as the user wrote it; `vf.pore` and `vf.0` are equal


@dataclasses.dataclass(frozen=True)
class Term:
    """One term of the objective: relation in RELATIONS, value for =, <=, >= (None for max / min)."""

    prop: Property
    relation: str
    value: float | None

    def text(self) -> str:
        if self.relation in ("max", "min"):
            return f"{'maximise' if self.relation == 'max' else 'minimise'} {self.prop.name}"
        return f"{self.prop.name}{self.relation}{self.value:g}"

    def tolerance(self) -> float:
        """Allowed error of a target (absolute, in the property's units)."""
        tol, kind = TOLERANCE[self.prop.kind]
        return tol if kind == "absolute" else tol * abs(self.value or 1.0)

    def met(self, value: float) -> bool:
        if self.relation == "=":
            return abs(value - self.value) <= self.tolerance()
        if self.relation == "<=":
            return value <= self.value
        if self.relation == ">=":
            return value >= self.value
        return False


def _phase_index(text: str, generator: FrozenGenerator) -> int:
    pm = generator.phase_map
    names = [pm.name(i) for i in range(pm.n_phases)]
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) in pm.labels:
        return pm.labels.index(int(text))
    raise PorejaxError(f"unknown phase {text!r}: this checkpoint's phases are {names} (labels {list(pm.labels)})")


def parse_property(text: str, generator: FrozenGenerator) -> Property:
    """`vf.pore`, `ssa.85`, `tpb`, `tau.pore.x`, ... -> Property (see the module docstring)."""
    parts = text.strip().split(".")
    kind = parts[0].lower()
    if kind not in KINDS:
        raise PorejaxError(
            f"unknown property {parts[0]!r} in {text!r}: use one of {', '.join(KINDS)} "
            "(e.g. vf.pore, ssa.nmc, tpb, tau.pore.x)"
        )
    n_phases = generator.phase_map.n_phases
    if kind == "tpb":
        if len(parts) == 1 and n_phases == 3:
            return Property(kind, (0, 1, 2), None, text.strip())
        phases = tuple(_phase_index(t, generator) for t in (parts[1].split("+") if len(parts) == 2 else ()))
        if len(parts) != 2 or len(set(phases)) != 3:
            raise PorejaxError(
                f"{text!r}: TPB needs three distinct phases, e.g. 'tpb' (three-phase generators) or 'tpb.A+B+C'"
            )
        return Property(kind, phases, None, text.strip())
    with_axis = kind in ("tau", "drel")
    if len(parts) != (3 if with_axis else 2):
        example = f"{kind}.pore.x" if with_axis else f"{kind}.pore"
        raise PorejaxError(
            f"malformed property {text!r}: expected {example} (phase name or label value"
            + (", axis x, y or z)" if with_axis else ")")
        )
    axis = None
    if with_axis:
        if parts[2].lower() not in AXES:
            raise PorejaxError(f"unknown axis {parts[2]!r} in {text!r}: use x, y or z (array axes 0, 1, 2)")
        axis = AXES.index(parts[2].lower())
    return Property(kind, (_phase_index(parts[1], generator),), axis, text.strip())


def parse_term(text: str, generator: FrozenGenerator) -> Term:
    """A target `NAME=VALUE` or bound `NAME<=VALUE` / `NAME>=VALUE` -> Term."""
    match = _TERM.match(text)
    if not match:
        raise PorejaxError(
            f"malformed target {text!r}: expected NAME=VALUE, NAME<=VALUE or NAME>=VALUE, "
            "e.g. vf.pore=0.40 or 'tau.pore.x<=2.0'"
        )
    try:
        value = float(match.group(3))
    except ValueError:
        raise PorejaxError(f"malformed number {match.group(3)!r} in target {text!r}") from None
    return Term(parse_property(match.group(1), generator), match.group(2), value)


def check_terms(terms: Sequence[Term], n_phases: int) -> tuple[Term, ...]:
    """The terms, or a PorejaxError naming a combination no volume can satisfy."""
    if not terms:
        raise PorejaxError("nothing to design: give at least one target, bound, maximise or minimise")
    for t in terms:
        v, kind = t.value, t.prop.kind
        if v is None:
            continue
        if not math.isfinite(v):
            raise PorejaxError(f"{t.text()}: the value must be finite")
        low, high = {"vf": (0, 1), "drel": (0, 1), "tau": (1, math.inf)}.get(kind, (0, math.inf))
        if (
            (t.relation == "=" and not low <= v <= high)
            or (t.relation == "<=" and v < low)
            or (t.relation == ">=" and v > high)
        ):
            raise PorejaxError(f"{t.text()} is impossible: {kind} lies in [{low}, {high}]")
    by_prop: dict[Property, list[Term]] = {}
    for t in terms:
        by_prop.setdefault(t.prop, []).append(t)
    for prop, group in by_prop.items():
        eq = {t.value for t in group if t.relation == "="}
        upper = min((t.value for t in group if t.relation in ("<=", "=")), default=math.inf)
        lower = max((t.value for t in group if t.relation in (">=", "=")), default=-math.inf)
        goals = {t.relation for t in group if t.relation in ("max", "min")}
        if len(eq) > 1 or lower > upper:
            raise PorejaxError(f"{prop.name}: the targets and bounds {[t.text() for t in group]} contradict each other")
        if goals and eq or len(goals) > 1:
            raise PorejaxError(f"{prop.name}: cannot both fix and optimise it, or both maximise and minimise it")
    vf_targets = {t.prop.phases[0]: t.value for t in terms if t.prop.kind == "vf" and t.relation == "="}
    total = sum(vf_targets.values())
    if total > 1 + 0.01 or (len(vf_targets) == n_phases and abs(total - 1) > 0.01):
        raise PorejaxError(f"volume fraction targets sum to {total:g}: the phase fractions of a volume sum to 1")
    return tuple(terms)


# --- latent prior ------------------------------------------------------------------------------------
def prior_residuals(z: jax.Array) -> jax.Array:
    """(4,) deviations of the first four moments of z's entries from N(0, 1)'s, each over its standard deviation."""
    flat = z.reshape(-1)
    return jnp.stack([(jnp.mean(flat**k) - mean) / math.sqrt(var) for k, mean, var in _MOMENTS])


def prior_penalty(z: jax.Array) -> jax.Array:
    """Sum of squares of `prior_residuals`: 0 when z's moments are N(0, 1)'s."""
    return jnp.sum(prior_residuals(z) ** 2)


def latent_statistics(z) -> dict:
    """Mean, std, skewness and excess kurtosis of the latent's entries, and the prior penalty."""
    flat = np.asarray(z, np.float64).reshape(-1)
    mean, std = flat.mean(), flat.std()
    centred = (flat - mean) / std
    return {
        "mean": float(mean),
        "std": float(std),
        "skewness": float(np.mean(centred**3)),
        "excess_kurtosis": float(np.mean(centred**4) - 3),
        "prior_penalty": float(prior_penalty(jnp.asarray(z))),
    }


# --- the problem -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
    """A design problem on one generator: latent shape, periodic axes, terms, and its jitted programs."""

    generator: FrozenGenerator
    terms: tuple[Term, ...]
    size: tuple[int, int, int]
    periodic: tuple[bool, bool, bool]
    prior_weight: float = 1.0
    rtol: float = 1e-3  # diffusion solves (soft and hard)

    @functools.cached_property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.generator.latent_size_for(self.size, self.periodic)

    @functools.cached_property
    def _probability_fn(self) -> Callable:
        return self.generator.probability_fn(self.latent_shape, self.periodic, self.size)

    @property
    def voxel_size(self) -> float:
        """Micrometres per voxel (1: voxel units when the checkpoint has no voxel size)."""
        return self.generator.phase_map.voxel_size or 1.0

    def side_boundary(self, axis: int) -> str:
        return "periodic" if all(self.periodic[a] for a in range(3) if a != axis) else "mirror"

    def probabilities(self, z: jax.Array) -> jax.Array:
        """Latent (A, A, A, C) -> phase probabilities (D, H, W, P) of the volume a user gets (what
        `FrozenGenerator.probabilities` gives), computing only the layers' crops that volume needs."""
        return self._probability_fn(z)

    def values(self, p: jax.Array) -> jax.Array:
        """Soft properties (..., K) of probabilities p (..., D, H, W, P), one volume or a batch (B, ...);
        on one-hot p the hard ones."""
        dx, wrap = self.voxel_size, all(self.periodic)
        out = []
        for t in self.terms:
            prop = t.prop
            if prop.kind == "vf":
                out.append(soft_volume_fraction(p)[..., prop.phases[0]])
            elif prop.kind == "ssa":
                out.append(soft_specific_surface_area(p, dx, wrap)[..., prop.phases[0]])
            elif prop.kind == "tpb":
                out.append(soft_tpb_density(p, dx, prop.phases, wrap))
            else:
                d_rel = soft_relative_diffusivity(
                    p, prop.phases[0], prop.axis, self.side_boundary(prop.axis), self.rtol
                )
                phi = soft_volume_fraction(p)[..., prop.phases[0]]
                tau = jnp.where(d_rel > 0, phi / jnp.where(d_rel > 0, d_rel, 1), jnp.inf)
                out.append(d_rel if prop.kind == "drel" else tau)
        return jnp.stack(out, axis=-1)

    def soft_and_hard_values(self, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(soft (K,), hard (K,)) of probabilities p (D, H, W, P): hard = exact metrics of the decoded
        labels argmax p. Evaluated as one batch of two volumes, so that one compiled diffusion solve
        serves both (the solver's compilation dominates a design's start-up)."""
        one_hot = jax.nn.one_hot(jnp.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)
        both = self.values(jnp.stack([p, jax.lax.stop_gradient(one_hot)]))
        return both[0], jax.lax.stop_gradient(both[1])

    def residuals(self, v: jax.Array, z: jax.Array, goals: Goals) -> tuple[jax.Array, jax.Array]:
        """(residuals r (K + 4,), linear part ()) of the objective sum(r^2) + linear at property values v (K,)
        and latent z: a target's or violated bound's error in tolerance units times sqrt(weight) (0 for
        max / min terms), then the prior's four moment deviations times sqrt(prior_weight); the linear
        part holds the max / min terms (see the module docstring)."""
        rows, linear = [], jnp.zeros((), jnp.float32)
        for k, t in enumerate(self.terms):
            x, goal = v[k] / goals.scales[k], goals.values[k] / goals.scales[k]
            if t.relation in ("max", "min"):
                term = -x if t.relation == "max" else x
                linear = linear + goals.weights[k] * jnp.where(jnp.isfinite(term), term, 1e6)
                rows.append(jnp.zeros((), jnp.float32))
            else:
                excess = {"=": x - goal, "<=": jnp.maximum(x - goal, 0), ">=": jnp.maximum(goal - x, 0)}[t.relation]
                rows.append(jnp.sqrt(goals.weights[k]) * jnp.where(jnp.isfinite(excess), excess, 1e3))
        return jnp.concatenate([jnp.stack(rows), math.sqrt(self.prior_weight) * prior_residuals(z)]), linear

    def objective(self, v: jax.Array, z: jax.Array, goals: Goals) -> jax.Array:
        """Objective sum(r^2) + linear of property values v (K,) at latent z (see `residuals`)."""
        r, linear = self.residuals(v, z, goals)
        return jnp.sum(r**2) + linear

    @functools.cached_property
    def step_program(self) -> Callable:
        """jitted (z, goals) -> Step: one generator + metric evaluation with the Jacobian of the residuals.

        The property values used are the hard ones with the soft ones' derivatives (module docstring);
        their Jacobian (K, A, A, A, C) comes from K reverse passes batched through the generator (K: the
        number of terms), the prior rows' analytically."""
        probabilities = self._probability_fn  # built outside the trace: it caches arrays on the generator

        def used_values(z):
            p = probabilities(z)
            soft, hard = self.soft_and_hard_values(p)
            used = jnp.where(jnp.isfinite(hard), soft + jax.lax.stop_gradient(hard - soft), soft)
            return used, (soft, hard, jnp.argmax(p, axis=-1).astype(jnp.uint8))

        def step(z, goals):
            used, pullback, (soft, hard, indices) = jax.vjp(used_values, z, has_aux=True)
            (jac_v,) = jax.vmap(pullback)(jnp.eye(used.shape[0], dtype=used.dtype))
            (r, linear), ((dr_dv, dr_dz), (dl_dv, _)) = (
                self.residuals(used, z, goals),
                jax.jacrev(self.residuals, argnums=(0, 1))(used, z, goals),
            )
            flat_v = jac_v.reshape(used.shape[0], -1)
            jacobian = (dr_dv @ flat_v + dr_dz.reshape(r.shape[0], -1)).reshape(r.shape + z.shape)
            linear_grad = (dl_dv @ flat_v).reshape(z.shape)
            objective = jnp.sum(r**2) + linear
            return Step(objective, r, jacobian, linear_grad, soft, hard, self.objective(hard, z, goals), indices)

        return jax.jit(step)

    @functools.cached_property
    def hard_program(self) -> Callable:
        """jitted z -> hard properties (K,): one generator + metric evaluation without gradient (for
        derivative-free searches)."""
        probabilities = self._probability_fn
        return jax.jit(lambda z: self.soft_and_hard_values(probabilities(z))[1])

    def goals(
        self,
        values: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
        start: np.ndarray | None = None,
    ) -> Goals:
        """Goals of the terms: their values (or `values`, one per term: the same compiled programs serve
        other target values), weights (default 1; 0 drops a term) and scales (a target's tolerance, or
        |start value| of a maximise / minimise term, 1 without a start)."""
        values = [t.value if t.value is not None else 0.0 for t in self.terms] if values is None else list(values)
        weights = [1.0] * len(self.terms) if weights is None else list(weights)
        start = np.ones(len(self.terms)) if start is None else np.asarray(start, np.float64)
        if len(values) != len(self.terms) or len(weights) != len(self.terms):
            raise PorejaxError(f"need one value and one weight per term ({len(self.terms)})")
        scales = [
            dataclasses.replace(t, value=v).tolerance()
            if t.relation not in ("max", "min")
            else (abs(s) if np.isfinite(s) and s != 0 else 1.0)
            for t, v, s in zip(self.terms, values, start)
        ]
        return Goals(*(jnp.asarray(x, jnp.float32) for x in (values, weights, scales)))

    def met(self, hard: np.ndarray, goals: Goals) -> tuple[bool, bool]:
        """(every weighted target and bound met, and nothing is left to maximise or minimise)."""
        feasible, optimising = True, False
        for t, v, goal, w in zip(self.terms, hard, np.asarray(goals.values), np.asarray(goals.weights)):
            if w == 0:
                continue
            if t.relation in ("max", "min"):
                optimising = True
            else:
                feasible &= dataclasses.replace(t, value=float(goal)).met(float(v))
        return feasible, feasible and not optimising


class Step(NamedTuple):
    """One evaluation of a latent z (A, A, A, C) with K terms; R = K + 4 residuals."""

    objective: jax.Array  # () sum(r^2) + linear, on the values used (hard, soft derivatives)
    residuals: jax.Array  # (R,)
    jacobian: jax.Array  # (R, A, A, A, C)
    linear_grad: jax.Array  # (A, A, A, C) gradient of the max / min terms
    soft: jax.Array  # (K,)
    hard: jax.Array  # (K,)
    hard_objective: jax.Array  # ()
    indices: jax.Array  # (D, H, W) uint8 phase indices of the decoded volume

    def gradient(self) -> jax.Array:
        """Gradient of the objective with respect to z: 2 J^T r + the linear part's."""
        return 2 * jnp.tensordot(self.residuals, self.jacobian, axes=1) + self.linear_grad


class Goals(NamedTuple):
    """Per-term arrays (K,) the compiled objective reads: target values, weights, scales."""

    values: jax.Array
    weights: jax.Array
    scales: jax.Array


def make_problem(
    generator: FrozenGenerator,
    terms: Sequence[str | Term] = (),
    size: int = 64,
    periodic: str | Sequence[bool] = "xyz",
    maximise: Sequence[str] = (),
    minimise: Sequence[str] = (),
    prior_weight: float = 1.0,
) -> Problem:
    """A Problem from text terms (`vf.pore=0.4`, `tau.pore.x<=2`) and properties to maximise / minimise."""
    parsed = [t if isinstance(t, Term) else parse_term(t, generator) for t in terms]
    parsed += [Term(parse_property(m, generator), "max", None) for m in maximise]
    parsed += [Term(parse_property(m, generator), "min", None) for m in minimise]
    if not (math.isfinite(prior_weight) and prior_weight >= 0):
        raise PorejaxError(f"prior weight must be a non-negative number, got {prior_weight!r}")
    flags = parse_periodic(periodic)
    sizes = (int(size),) * 3 if np.ndim(size) == 0 else tuple(int(s) for s in size)
    generator.latent_size_for(sizes, flags)  # a size the periodic axes cannot have fails here, in one line
    return Problem(generator, check_terms(parsed, generator.phase_map.n_phases), sizes, flags, float(prior_weight))


# --- the optimisation ----------------------------------------------------------------------------------
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


def measure(problem: Problem, labels: np.ndarray) -> dict[str, float]:
    """Hard properties by porejax.metrics on a decoded label volume (D, H, W)."""
    pm, dx, wrap = problem.generator.phase_map, problem.voxel_size, all(problem.periodic)
    out = {}
    for t in problem.terms:
        prop, label = t.prop, pm.labels[t.prop.phases[0]]
        if prop.kind == "vf":
            out[prop.name] = float(metrics.volume_fraction(labels, phases=pm.labels)[prop.phases[0]])
        elif prop.kind == "ssa":
            out[prop.name] = float(
                metrics.specific_surface_area(labels, dx, phases=pm.labels, periodic=wrap)[prop.phases[0]]
            )
        elif prop.kind == "tpb":
            out[prop.name] = float(
                metrics.triple_phase_boundary_density(labels, dx, tuple(pm.labels[i] for i in prop.phases), wrap)
            )
        else:
            res = metrics.tortuosity(labels == label, prop.axis, problem.side_boundary(prop.axis), rtol=problem.rtol)
            out[prop.name] = float(res.relative_diffusivity if prop.kind == "drel" else res.tau)
    return out


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
    is undone and the radius quartered; the run ends when a step of the smallest radius fails (the
    soft derivatives no longer point the hard values the right way). Each step is one generator + metric
    evaluation. With maximise /
    minimise terms the objective has no least-squares form: Adam (optax) with `learning_rate` on its
    gradient. values, weights: see `Problem.goals`."""
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
    history, best = [], None
    for step in range(int(steps) + 1):
        t0 = time.perf_counter()
        ev = jax.device_get(problem.step_program(jnp.asarray(z), goals))
        seconds = time.perf_counter() - t0
        feasible, done = problem.met(ev.hard, goals)
        hard_objective = float(ev.hard_objective)
        history.append(
            {
                "step": step,
                "objective": float(ev.objective),
                "hard_objective": hard_objective,
                "hard": dict(zip(names, map(float, ev.hard))),
                "soft": dict(zip(names, map(float, ev.soft))),
                "feasible": feasible,
                "seconds": seconds,
            }
        )
        if progress is not None:
            shown = "  ".join(f"{n} {history[-1]['hard'][n]:.4g} (soft {history[-1]['soft'][n]:.4g})" for n in names)
            progress(f"step {step}/{steps}  objective {hard_objective:.4g}  {shown}  {seconds:.1f} s")
        key, stalled = (not feasible, hard_objective), False
        if best is not None and predicted is not None:  # adapt the trust radius to the step just taken
            gain = (best[0][1] - hard_objective) / max(best[0][1] - predicted, 1e-12)
            stalled = gain <= 0 and radius <= TRUST_RADIUS[1] * rms  # the smallest step failed: nothing left
            radius = radius * (2.0 if gain >= 0.5 else 1.0 if gain > 0 else 0.25)
            radius = min(max(radius, TRUST_RADIUS[1] * rms), TRUST_RADIUS[2] * rms)
        if best is None or key < best[0]:
            best = (key, step, z, ev)
        if done or stalled or step == steps:
            break
        if optimising:
            updates, opt_state = optimiser.update(jnp.asarray(ev.gradient()), opt_state, jnp.asarray(z))
            z = np.asarray(optax.apply_updates(jnp.asarray(z), updates))
        else:
            base = best[3]
            delta, predicted = trust_region_step(base.residuals, base.jacobian.reshape(len(base.residuals), -1), radius)
            z = (best[2] + delta.reshape(z.shape)).astype(np.float32)
    (infeasible, _), best_step, best_z, best_ev = best
    labels = np.asarray(problem.generator.phase_map.labels, problem.generator.phase_map.label_dtype)[best_ev.indices]
    step_s = float(np.median([r["seconds"] for r in history[1:]])) if len(history) > 1 else 0.0
    times = {
        "first_step_s": history[0]["seconds"],
        "median_step_s": step_s,
        "compile_s": max(0.0, history[0]["seconds"] - step_s),
        "total_s": time.perf_counter() - start,
    }
    return DesignResult(
        best_z, labels, measure(problem, labels), best_step, not infeasible, history, times, latent_statistics(best_z)
    )
