"""Policies computed from the importances or from a budget: ``--ratio auto`` and MAC/param targets.

Cases:
1. ``auto``: the importances of the prunable channels (aggregated per coupled channel, as the
   plan sees them) are fitted with a two-component Gaussian mixture (EM, initialised at Otsu's
   threshold) on log10 scale when every value is positive, else on the raw values. The
   statistic is Ashman's D = sqrt(2) |mu1 - mu2| / sqrt(s1^2 + s2^2) of the two components;
   D > 2 means two cleanly separated modes. The threshold is the minimum of the mixture density
   between the two means (the valley). D <= 2, a component holding under 1% of the channels, or
   no valley: not bimodal, refused.
2. Targets (``macs`` / ``params``, a fraction F of the original): the threshold is searched by
   bisection over the sorted distinct importances (global scope) or over the ratio in steps of
   1/1000 (local scope), each step a plan costed by :mod:`onnxrecede.engine.budget` (the
   analysis is done once). The result is the smallest cut whose cost is at most F; when even
   the largest cut (every prunable channel but ``min_channels``) stays above F, the smallest
   reachable fraction is reported in the error.
3. Global scope, when that cut overshoots (cost under 0.9 F: on a small model one channel can
   carry more than 10% of the MACs): from the last cut above F, the next channels in
   importance order are removed one value at a time, skipping any whose removal alone would
   overshoot, until the cost is in [0.9 F, F] (at most ``REFINE_STEPS`` values are tried).
   The skipped channels are kept although they rank below the final threshold; the report
   counts them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.budget import CostModel
from onnxrecede.engine.plan import Plan, Policy, class_scores, make_plan
from onnxrecede.errors import InputError

Scores = Mapping[ir.Value, tuple[str, np.ndarray]]

#: Ashman's D above which two mixture components count as separate modes
MIN_SEPARATION = 2.0
#: smallest share of channels a mode may hold
MIN_WEIGHT = 0.01
LOCAL_STEPS = 1000
#: values tried by case 3, and the fraction of the budget it aims to reach
REFINE_STEPS = 64
REFINE_FLOOR = 0.9


def prunable_importances(analysis: Analysis, scores: Scores, aggregate: str) -> np.ndarray:
    """Aggregated importance of every scored channel of every prunable group."""
    importance = class_scores(analysis, scores, aggregate)
    vals = [
        importance[int(r)]
        for g in analysis.groups
        if g.prunable
        for r in g.classes
        if int(r) in importance
    ]
    return np.asarray(vals, dtype=np.float64)


# ----------------------------------------------------------------------------- auto


@dataclass(frozen=True)
class AutoCut:
    threshold: float
    separation: float  # Ashman's D
    scale: str  # "log10" | "linear"
    means: tuple[float, float]
    weights: tuple[float, float]
    fraction_below: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "statistic": "ashman_d",
            "min_separation": MIN_SEPARATION,
        }


def otsu_threshold(x: np.ndarray) -> float:
    """The split of sorted ``x`` that maximises the between-class variance."""
    s = np.sort(x)
    n = len(s)
    csum = np.cumsum(s)
    k = np.arange(1, n)
    w0, w1 = k / n, (n - k) / n
    m0 = csum[:-1] / k
    m1 = (csum[-1] - csum[:-1]) / (n - k)
    between = w0 * w1 * (m0 - m1) ** 2
    between[s[1:] == s[:-1]] = -1.0  # never split between equal values
    i = int(np.argmax(between))
    return float((s[i] + s[i + 1]) / 2)


def _gaussian(x: np.ndarray, mu: float, var: float) -> np.ndarray:
    return np.exp(-((x - mu) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def fit_two_gaussians(
    x: np.ndarray, iterations: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a two-component 1-D Gaussian mixture: (weights, means, variances), low mean first."""
    t = otsu_threshold(x)
    resp = (x > t).astype(np.float64)
    floor = max(float(np.var(x)) * 1e-6, 1e-12)
    for _ in range(iterations):
        r = np.stack([1.0 - resp, resp])
        nk = r.sum(axis=1) + 1e-12
        w = nk / len(x)
        mu = (r @ x) / nk
        var = np.maximum((r * (x[None, :] - mu[:, None]) ** 2).sum(axis=1) / nk, floor)
        dens = np.stack([w[k] * _gaussian(x, mu[k], var[k]) for k in range(2)]) + 1e-300
        new = dens[1] / dens.sum(axis=0)
        if np.max(np.abs(new - resp)) < 1e-9:
            resp = new
            break
        resp = new
    order = np.argsort(mu)
    return w[order], mu[order], var[order]


def auto_threshold(values: np.ndarray) -> AutoCut:
    """Case 1: the valley between the two modes of ``values``, or InputError if unimodal."""
    distinct = len(np.unique(values))
    if distinct < 8:
        raise InputError(
            f"--ratio auto needs at least 8 distinct prunable importances, got {distinct} "
            f"distinct value{'s' if distinct != 1 else ''} among {len(values)} channels; "
            "use --ratio R"
        )
    positive = bool(np.all(values > 0))
    x = np.log10(values) if positive else values.astype(np.float64)
    w, mu, var = fit_two_gaussians(x)
    d = math.sqrt(2) * abs(mu[1] - mu[0]) / math.sqrt(var[0] + var[1])
    grid = np.linspace(mu[0], mu[1], 2001)
    density = w[0] * _gaussian(grid, mu[0], var[0]) + w[1] * _gaussian(grid, mu[1], var[1])
    i = int(np.argmin(density))
    has_valley = 0 < i < len(grid) - 1
    if d <= MIN_SEPARATION or min(w) < MIN_WEIGHT or not has_valley:
        why = (
            f"Ashman's D = {d:.2f} <= {MIN_SEPARATION:g}"
            if d <= MIN_SEPARATION
            else f"one mode holds {100 * min(w):.1f}% < {100 * MIN_WEIGHT:g}% of the channels"
            if min(w) < MIN_WEIGHT
            else "the mixture density has no valley between its modes"
        )
        raise InputError(
            f"--ratio auto: the importances are not bimodal ({why}, two-component Gaussian "
            f"mixture on {'log10' if positive else 'raw'} importances of {len(values)} channels); "
            "give --ratio R, --threshold T or a --target-macs/--target-params budget instead"
        )
    # Any value in the empty stretch around the valley removes the same channels: take the
    # middle of the gap between the neighbouring importances (on the fitted scale).
    v = grid[i]
    below, above = x[x < v], x[x >= v]
    mid = (below.max() + above.min()) / 2 if len(below) and len(above) else v
    cut = float(10**mid) if positive else float(mid)
    return AutoCut(
        threshold=cut,
        separation=float(d),
        scale="log10" if positive else "linear",
        means=(
            float(10 ** mu[0]) if positive else float(mu[0]),
            float(10 ** mu[1]) if positive else float(mu[1]),
        ),  # fmt: skip
        weights=(float(w[0]), float(w[1])),
        fraction_below=float(np.mean(values < cut)),
    )


# ----------------------------------------------------------------------------- budgets


@dataclass
class SearchResult:
    plan: Plan
    policy: Policy
    estimate: tuple[int, int]
    steps: list[dict[str, Any]] = field(default_factory=list)
    skipped_channels: int = 0  # kept below the threshold to land closer to the target


class UnreachableTargetError(InputError):
    """Even the largest cut misses the target; ``reachable`` is the smallest fraction."""

    def __init__(self, message: str, reachable: float) -> None:
        super().__init__(message)
        self.reachable = reachable


def search_target(
    analysis: Analysis,
    scores: Scores,
    policy: Policy,
    cost_model: CostModel,
    metric: str,
    fraction: float,
) -> SearchResult:
    """Case 2: the smallest cut whose ``metric`` ("macs"/"params") is at most ``fraction``."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"--target-{metric} must be in (0, 1), got {fraction}")
    before = cost_model.macs_before if metric == "macs" else cost_model.params_before
    if before <= 0:
        raise InputError(f"the model has no counted {metric}: --target-{metric} cannot apply")
    index = 0 if metric == "macs" else 1
    candidates = PolicyLadder.build(analysis, scores, policy)
    steps: list[dict[str, Any]] = []
    cache: dict[int, tuple[Plan, tuple[int, int]]] = {}

    def evaluate(i: int) -> tuple[Plan, tuple[int, int]]:
        if i not in cache:
            plan = make_plan(analysis, scores, candidates(i))
            est = cost_model.estimate(plan.keep_element)
            cache[i] = (plan, est)
            steps.append(_step(candidates(i), plan, est, cost_model))
        return cache[i]

    hi = candidates.last
    if evaluate(hi)[1][index] > fraction * before:
        reachable = evaluate(hi)[1][index] / before
        raise UnreachableTargetError(
            f"--target-{metric} {fraction:g} is unreachable: the barriers and --min-channels "
            f"leave at least {reachable:.4f} of the {metric} (smallest reachable value); "
            f"give --target-{metric} {math.ceil(reachable * 1000) / 1000:g} or more, or see "
            "`onnxrecede inspect` for what blocks the rest",
            reachable,
        )
    lo = 0  # removes nothing: above the target
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if evaluate(mid)[1][index] <= fraction * before:
            hi = mid
        else:
            lo = mid
    plan, est = evaluate(hi)
    result = SearchResult(plan, candidates(hi), est, sorted(steps, key=lambda s: s["position"]))
    if policy.scope == "global" and est[index] < REFINE_FLOOR * fraction * before and hi > 0:
        refined = _refine(analysis, scores, candidates, lo, cost_model, index, fraction * before)
        if refined is not None and refined.estimate[index] > est[index]:
            refined.steps = result.steps
            return refined
    return result


def smallest_fraction(
    analysis: Analysis, scores: Scores, policy: Policy, cost_model: CostModel, metric: str
) -> float:
    """The fraction of ``metric`` ("macs"/"params") the largest cut leaves: the smallest target
    that can be met (the barriers and ``min_channels`` keep the rest)."""
    before = cost_model.macs_before if metric == "macs" else cost_model.params_before
    if before <= 0:
        raise InputError(f"the model has no counted {metric}: --target-{metric} cannot apply")
    candidates = PolicyLadder.build(analysis, scores, policy)
    plan = make_plan(analysis, scores, candidates(candidates.last))
    return cost_model.estimate(plan.keep_element)[0 if metric == "macs" else 1] / before


def _refine(
    analysis: Analysis,
    scores: Scores,
    candidates: PolicyLadder,
    lo: int,
    cost_model: CostModel,
    index: int,
    budget: float,
) -> SearchResult | None:
    """Case 3: continue from cut ``lo`` (above budget), skipping values that overshoot."""
    importance = class_scores(analysis, scores, candidates(0).aggregate)
    roots_of: dict[float, list[int]] = {}
    for g in analysis.groups:
        if g.prunable:
            for r in g.classes:
                if int(r) in importance:
                    roots_of.setdefault(importance[int(r)], []).append(int(r))
    skipped: set[int] = set()
    best: SearchResult | None = None
    last = candidates.last
    for i in range(lo + 1, min(lo + 1 + REFINE_STEPS, last + 1)):
        policy = candidates(i)
        plan = make_plan(analysis, scores, policy, frozenset(skipped))
        est = cost_model.estimate(plan.keep_element)
        if est[index] > budget:
            continue  # still above: this value's channels stay removed, go on
        if est[index] >= REFINE_FLOOR * budget:
            return SearchResult(plan, policy, est, skipped_channels=len(skipped))
        if best is None or est[index] > best.estimate[index]:
            best = SearchResult(plan, policy, est, skipped_channels=len(skipped))
        low, high = candidates(i - 1).threshold, policy.threshold
        assert low is not None and high is not None
        skipped.update(r for v, rs in roots_of.items() if low <= v < high for r in rs)
    return best


@dataclass(frozen=True)
class PolicyLadder:
    """Policy number i of an ordered family, from no cut (0) to the largest cut (``last``).

    Global scope: "remove what lies below the i-th distinct importance" (the last threshold lies
    above every importance); local scope: ratio i / ``LOCAL_STEPS`` in every group.
    """

    base: Policy
    thresholds: tuple[float, ...] = ()

    @classmethod
    def build(cls, analysis: Analysis, scores: Scores, policy: Policy) -> PolicyLadder:
        if policy.scope == "local":
            return cls(policy)
        values = np.unique(prunable_importances(analysis, scores, policy.aggregate))
        if not len(values):
            raise InputError(
                "no prunable channel is scored by these importances, so no budget can be met; "
                "see `onnxrecede inspect MODEL -i IMP` for blocked and unscored groups"
            )
        return cls(policy, (*values.tolist(), float(np.nextafter(values[-1], math.inf))))

    @property
    def last(self) -> int:
        return len(self.thresholds) - 1 if self.thresholds else LOCAL_STEPS

    def __call__(self, i: int) -> Policy:
        if self.thresholds:
            return dataclasses.replace(self.base, ratio=None, threshold=self.thresholds[i])
        ratio = min(i / LOCAL_STEPS, 1.0 - 1e-9)
        return dataclasses.replace(self.base, ratio=ratio, threshold=None)


def _step(policy: Policy, plan: Plan, est: tuple[int, int], model: CostModel) -> dict[str, Any]:
    return {
        "position": policy.threshold if policy.threshold is not None else policy.ratio,
        "threshold": policy.threshold,
        "ratio": policy.ratio if policy.threshold is None else None,
        "channels_removed": int(sum(plan.removed_per_group.values())),
        "macs_fraction": est[0] / model.macs_before if model.macs_before else 1.0,
        "params_fraction": est[1] / model.params_before if model.params_before else 1.0,
    }
