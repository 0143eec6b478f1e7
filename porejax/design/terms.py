"""The terms of a design problem: properties (`vf.pore`, `tau.pore.x`), targets, bounds and
maximise / minimise, parsed from text with one-line errors, and the check that a combination is possible."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from porejax.axes import AXES
from porejax.errors import PorejaxError
from porejax.generate import FrozenGenerator

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
