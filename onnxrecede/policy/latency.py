"""``--target-latency F``: every group's kept count chosen to keep the most importance within
F times the original latency, by a multiple-choice knapsack over the measured steps.

Cases:
1. A unit's latency at kept counts (a, b) on its (output, input) axes is
   ``full * out(a) / full * in(b) / full`` (separable in its axes), each curve read at the
   first measured count >= the kept count: a count between two grid points costs what the
   next step costs, so the options of a group are its grid points (the top of each step: kept
   counts land just below a step, never just above).
2. The model's predicted latency is ``model_ms`` times the summed unit latency over the summed
   full-width unit latency (the ops outside the units scale alike).
3. Options of a scored group: the grid points from its floor (``min_channels``, its unscored
   channels) to its size, multiples of ``round_to`` only when given; an option's value is the
   sum of the importances it keeps (global scope: the aggregated importances; local scope:
   each divided by its group's mean, so that groups weigh alike).
4. A unit couples two groups, so the cost of a group's option is the change in its units'
   latency with the other groups at the current counts; starting from no cut, the knapsack
   is solved and the counts updated until they stop changing (at most ``ITERATIONS``).
5. Because that linearisation can be optimistic, the knapsack budget is bisected so that the
   exact prediction of case 1-2 meets the target; of the plans that meet it, the one keeping
   the most importance is taken. If even every group at its floor misses the target, the
   smallest reachable fraction is reported.
6. A removable residual branch (:mod:`onnxrecede.engine.branches`) is one more option of its
   first inner group: kept count 0, which costs 0 for every layer of the branch (its measured
   latencies, launches included, are saved). Its value is minus the importance of the
   branch's other inner groups: those stay at full width in the knapsack (free once the
   branch is gone) yet go with it, so a removed branch counts exactly the importance of every
   channel it held as lost, the same measure as for channels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.plan import Plan, Policy, class_scores, enforce_minimum
from onnxrecede.errors import InputError
from onnxrecede.latency.table import fingerprint
from onnxrecede.latency.units import (
    Axis,
    Curve,
    Unit,
    axes_groups,
    find_units,
    grid_points,
    read_curve,
)
from onnxrecede.policy import knapsack
from onnxrecede.policy.targets import UnreachableTargetError

Scores = Mapping[ir.Value, tuple[str, np.ndarray]]
ITERATIONS = 6
BISECTIONS = 14


@dataclass
class CostedUnit:
    """Case 1: one unit, its axes and measured curves."""

    name: str
    full_ms: float
    out: Axis | None
    inp: Axis | None
    out_curve: Curve | None
    in_curve: Curve | None
    #: case 6: the group whose count 0 removes this layer's residual branch
    gone_with: int | None = None

    def ms(self, counts: Mapping[int, int], sizes: Mapping[int, int]) -> float:
        if self.gone_with is not None and counts[self.gone_with] == 0:
            return 0.0
        value = self.full_ms
        for axis, curve in ((self.out, self.out_curve), (self.inp, self.in_curve)):
            if axis is not None and curve is not None and axis.variable and self.full_ms > 0:
                value *= curve.at(axis_kept(axis, counts, sizes)) / self.full_ms
        return value

    @property
    def groups(self) -> set[int]:
        return axes_groups(self.out, self.inp)


def axis_kept(axis: Axis, counts: Mapping[int, int], sizes: Mapping[int, int]) -> int:
    """Kept positions of an axis when each group keeps ``counts[g]`` of ``sizes[g]``."""
    fixed = axis.size - sum(axis.positions.values())
    kept = fixed + sum(n * counts[g] / sizes[g] for g, n in axis.positions.items())
    return int(math.ceil(kept - 1e-9))


@dataclass(frozen=True)
class LatencyTarget:
    """A table (as read by :func:`~onnxrecede.latency.table.load_table`) and a fraction F."""

    table: dict[str, Any]
    fraction: float
    path: str = ""


@dataclass
class GroupOptions:
    gid: int
    counts: list[int]
    values: list[float]
    keep_order: list[int]  # roots, most important first; unscored first of all
    unscored: int = 0


@dataclass
class LatencyResult:
    plan: Plan
    policy: Policy
    counts: dict[int, int]
    predicted_fraction: float
    report: dict[str, Any] = field(default_factory=dict)


def costed_units(analysis: Analysis, table: Mapping[str, Any], model: ir.Model) -> list[CostedUnit]:
    """The analysis' units with their curves from ``table`` (InputError if it does not fit)."""
    if table.get("model_fingerprint") != fingerprint(model):
        raise InputError(
            f"the latency table was measured for another model ({table.get('model')}); "
            "measure this one with `onnxrecede latency MODEL -o TABLE.json`"
        )
    rows = {r["node"]: r for r in table.get("units", [])}
    out = []
    for unit in find_units(analysis):
        row = rows.get(unit.name)
        if row is None:
            raise InputError(
                f"the latency table has no entry for {unit.node.op_type} '{unit.name}'; "
                "measure the model again with `onnxrecede latency`"
            )
        out.append(_costed(unit, row))
    return out


def _costed(unit: Unit, row: Mapping[str, Any]) -> CostedUnit:
    out, inp = read_curve(row.get("out")), read_curve(row.get("in"))
    return CostedUnit(unit.name, float(row["full_ms"]), unit.out, unit.inp, out, inp)


def group_options(
    analysis: Analysis, scores: Scores, policy: Policy, max_points: int
) -> list[GroupOptions]:
    """Case 3: kept counts and values per scored prunable group."""
    importance = class_scores(analysis, scores, policy.aggregate)
    result = []
    for g in analysis.groups:
        if not g.prunable:
            continue
        roots = [int(r) for r in g.classes]
        scored = [(importance[r], pos, r) for pos, r in enumerate(roots) if r in importance]
        if not scored:
            continue
        unscored = [r for r in roots if r not in importance]
        scale = 1.0
        if policy.scope == "local":
            mean = float(np.mean([s for s, _, _ in scored]))
            scale = 1.0 / mean if mean > 0 else 1.0
        ranked = sorted(scored, key=lambda t: (-t[0], -t[1]))  # removal order reversed
        order = unscored + [r for _, _, r in ranked]
        cumulative = np.concatenate([[0.0], np.cumsum([s * scale for s, _, _ in ranked])])
        floor = min(g.size, max(policy.min_channels, len(unscored), 1))
        counts = [k for k in grid_points(g.size, max_points) if k >= floor]
        if policy.round_to > 1:
            counts = [k for k in counts if k % policy.round_to == 0 or k == g.size]
        counts = sorted(set(counts) | {g.size})
        values = [float(cumulative[k - len(unscored)]) for k in counts]
        result.append(GroupOptions(g.id, counts, values, order, len(unscored)))
    return result


class _Model:
    """Cases 1-2 over the groups' counts."""

    def __init__(self, units: list[CostedUnit], sizes: dict[int, int]) -> None:
        self.units = units
        self.sizes = sizes
        self.by_group: dict[int, list[CostedUnit]] = {}
        for u in units:
            for g in u.groups:
                self.by_group.setdefault(g, []).append(u)
        self.full = self.total(dict(sizes))

    def total(self, counts: Mapping[int, int]) -> float:
        return sum(u.ms(counts, self.sizes) for u in self.units)

    def delta(self, gid: int, k: int, counts: dict[int, int]) -> float:
        units = self.by_group.get(gid, [])
        before = sum(u.ms(counts, self.sizes) for u in units)
        trial = dict(counts)
        trial[gid] = k
        return sum(u.ms(trial, self.sizes) for u in units) - before


def _solve(model: _Model, options: list[GroupOptions], budget: float) -> dict[int, int] | None:
    """Case 4 for one knapsack budget (the sum of unit latencies)."""
    counts = dict(model.sizes)
    for _ in range(ITERATIONS):
        classes, shifts = [], 0.0
        for opt in options:
            deltas = [model.delta(opt.gid, k, counts) for k in opt.counts]
            low = min(deltas)
            shifts += low
            classes.append([knapsack.Option(d - low, v) for d, v in zip(deltas, opt.values)])
        slack = budget - model.total(counts) - shifts
        if slack < 0:
            return None
        try:
            picks = knapsack.solve(classes, slack)
        except knapsack.InfeasibleError:
            return None
        new = dict(counts)
        for opt, j in zip(options, picks):
            new[opt.gid] = opt.counts[j]
        if new == counts:
            break
        counts = new
    return counts


def search_latency(
    analysis: Analysis,
    scores: Scores,
    policy: Policy,
    target: LatencyTarget,
    whole_groups: frozenset[int] = frozenset(),
) -> LatencyResult:
    """Cases 1-5: the plan and its predicted latency fraction."""
    fraction = target.fraction
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--target-latency must be in (0, 1), got {fraction}")
    table = target.table
    units = costed_units(analysis, table, analysis.model)
    max_points = int(table.get("max_points", 32))
    options = group_options(analysis, scores, policy, max_points)
    _branch_options(analysis, units, options, whole_groups)
    if not options:
        raise InputError(
            "no prunable channel is scored by these importances, so no latency budget can be "
            "met; see `onnxrecede inspect MODEL -i IMP` for blocked and unscored groups"
        )
    sizes = {g.id: g.size for g in analysis.groups}
    model = _Model(units, sizes)
    goal = fraction * model.full
    floor = dict(sizes) | {o.gid: o.counts[0] for o in options}
    if model.total(floor) > goal:
        reachable = model.total(floor) / model.full
        raise UnreachableTargetError(
            f"--target-latency {fraction:g} is unreachable: the barriers and --min-channels "
            f"leave at least {reachable:.4f} of the predicted latency; give --target-latency "
            f"{math.ceil(reachable * 1000) / 1000:g} or more",
            reachable,
        )
    counts, tries = _bisect(model, options, goal)
    value = {o.gid: dict(zip(o.counts, o.values)) for o in options}
    kept_importance = sum(value[g][counts[g]] for g in value)
    total_importance = sum(o.values[-1] for o in options)
    plan = _plan(analysis, scores, policy, options, counts)
    predicted = model.total(counts) / model.full
    report = {
        "target_latency": fraction,
        "latency": {
            "table": target.path,
            "provider": table.get("machine", {}).get("provider"),
            "device": table.get("machine", {}).get("device"),
            "batch": table.get("batch"),
            "predicted_fraction": predicted,
            "predicted_ms": predicted * float(table.get("model_ms", 0.0)),
            "table_model_ms": table.get("model_ms"),
            "importance_kept": kept_importance / total_importance if total_importance else 1.0,
            "knapsack_budgets_tried": tries,
            "kept_counts": {str(g): counts[g] for g in sorted(value) if counts[g] != sizes[g]},
        },
    }
    chosen = Policy(
        None, None, policy.scope, policy.aggregate, policy.min_channels, policy.round_to
    )
    return LatencyResult(plan, chosen, counts, predicted, report)


def _bisect(model: _Model, options: list[GroupOptions], goal: float) -> tuple[dict[int, int], int]:
    """Case 5: the best plan whose exact prediction meets ``goal``."""
    value = {o.gid: dict(zip(o.counts, o.values)) for o in options}

    def worth(counts: Mapping[int, int]) -> float:
        return sum(value[g][counts[g]] for g in value)

    best = dict(model.sizes) | {o.gid: o.counts[0] for o in options}  # the floor: meets goal
    lo, hi = 0.0, 1.5 * goal
    tries = 0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        tries += 1
        counts = _solve(model, options, mid)
        if counts is not None and model.total(counts) <= goal:
            if worth(counts) > worth(best):
                best = counts
            lo = mid
        else:
            hi = mid
    return best, tries


def _branch_options(
    analysis: Analysis,
    units: list[CostedUnit],
    options: list[GroupOptions],
    whole_groups: frozenset[int],
) -> None:
    """Case 6: count 0 for the first inner group of every removable branch."""
    if not whole_groups:
        return
    from onnxrecede.engine.branches import find_branches, inner_groups

    by_gid = {o.gid: o for o in options}
    by_name = {u.name: u for u in units}
    for branch in find_branches(analysis):
        first = by_gid.get(branch.groups[0]) if branch.groups[0] in whole_groups else None
        if first is None or first.unscored or 0 in first.counts:
            continue
        inner = inner_groups(analysis, set(branch.nodes))
        others = [by_gid[g].values[-1] for g in inner if g != first.gid and g in by_gid]
        first.counts.insert(0, 0)
        first.values.insert(0, -float(sum(others)))
        for node in branch.nodes:
            unit = by_name.get(node.name or "")
            if unit is not None:
                unit.gone_with = first.gid


def _plan(
    analysis: Analysis, scores: Scores, policy: Policy, options: list[GroupOptions],
    counts: Mapping[int, int],
) -> Plan:  # fmt: skip
    importance = class_scores(analysis, scores, policy.aggregate)
    keep_root = np.ones(analysis.roots.shape[0], dtype=bool)
    for opt in options:
        for r in opt.keep_order[counts[opt.gid] :]:
            keep_root[r] = False
    gone = {o.gid for o in options if counts[o.gid] == 0}
    exempt = {int(r) for g in gone for r in analysis.groups[g].classes}
    restored = enforce_minimum(analysis, keep_root, importance, policy.min_channels, exempt)
    plan = Plan(keep_root[analysis.roots], importance, {o.gid for o in options}, restored=restored)
    plan.removed_groups = gone
    for g in analysis.groups:
        n = int((~keep_root[g.classes]).sum())
        if n:
            plan.removed_per_group[g.id] = n
    return plan
