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

from porejax.design.optimise import TRUST_RADIUS, DesignResult, run_design, trust_region_step
from porejax.design.prior import latent_statistics, prior_penalty, prior_residuals
from porejax.design.problem import Goals, Problem, Step, make_problem, measure
from porejax.design.terms import KINDS, RELATIONS, TOLERANCE, Property, Term, check_terms, parse_property, parse_term

__all__ = [
    "KINDS",
    "RELATIONS",
    "TOLERANCE",
    "TRUST_RADIUS",
    "DesignResult",
    "Goals",
    "Problem",
    "Property",
    "Step",
    "Term",
    "check_terms",
    "latent_statistics",
    "make_problem",
    "measure",
    "parse_property",
    "parse_term",
    "prior_penalty",
    "prior_residuals",
    "run_design",
    "trust_region_step",
]
