"""A design problem on one frozen generator: its terms, latent shape and periodic axes, and the jitted
programs that evaluate a latent (phase probabilities, soft and hard property values, residuals of the
objective and their Jacobian), plus the hard metrics of a decoded volume (`measure`)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from porejax import metrics
from porejax.design.prior import prior_residuals
from porejax.design.terms import Term, check_terms, parse_property, parse_term
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator, parse_periodic
from porejax.metrics.soft import (
    soft_specific_surface_area,
    soft_tpb_density,
    soft_volume_fraction,
)
from porejax.metrics.soft_diffusion import soft_relative_diffusivity


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
