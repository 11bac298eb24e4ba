"""Choosing the plan: the one policy stage of ``prune``, dispatching on what was asked for.

1. ``ratio`` / ``threshold`` (``ratio=0.5`` when nothing is given): :func:`make_plan` directly.
2. ``ratio="auto"``: the threshold at the valley of bimodal importances (:mod:`.targets`).
3. ``target_macs`` / ``target_params``: the budget search over plans costed from the one
   analysis (:mod:`.targets`).
4. ``target_speedup``: the speedup search (:mod:`.speedup`); each candidate plan is rewritten
   from the same analysis into a copy and timed against the original.
5. ``latency_table`` with ``target_latency`` F (or ``target_speedup`` X, read as F = 1 / X):
   the knapsack over the table's measured steps (:mod:`.latency`); ``prune`` measures the cut
   once afterwards.

``whole_groups`` (cases 1, 2 and 5): groups that may lose every channel, taking their residual
branch with them (:mod:`onnxrecede.engine.branches`).

Exactly one of them may be given; every check happens before the model is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.budget import build_cost_model
from onnxrecede.engine.cost import Cost
from onnxrecede.engine.plan import Plan, Policy, make_plan
from onnxrecede.errors import InputError
from onnxrecede.policy import speedup, targets
from onnxrecede.policy.latency import LatencyTarget, search_latency
from onnxrecede.policy.latency_target import latency_target
from onnxrecede.policy.targets import Scores
from onnxrecede.progress import Progress
from onnxrecede.report.sections import LatencySection, PolicySection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanRequest:
    """What the caller asked for (``prune``'s policy arguments)."""

    ratio: float | Literal["auto"] | None = None
    threshold: float | None = None
    scope: str = "global"
    aggregate: str = "max"
    min_channels: int = 1
    round_to: int = 1
    target_macs: float | None = None
    target_params: float | None = None
    target_speedup: float | None = None
    speedup_search: Mapping[str, Any] | None = None
    latency_table: str | os.PathLike[str] | Mapping[str, Any] | None = None
    target_latency: float | None = None

    @cached_property
    def latency(self) -> LatencyTarget | None:
        """Case 5's target with its table read and checked (None: no latency table)."""
        return latency_target(self.latency_table, self.target_latency, self.target_speedup)

    def base_policy(self) -> Policy:
        """Check the request; the policy of case 1, or the base the searches refine."""
        given = [
            name
            for name, v in (
                ("--ratio", self.ratio), ("--threshold", self.threshold),
                ("--target-macs", self.target_macs), ("--target-params", self.target_params),
                ("--target-speedup", self.target_speedup),
                ("--target-latency", self.target_latency),
            )
            if v is not None
        ]  # fmt: skip
        if len(given) > 1:
            raise InputError(f"give only one of {', '.join(given)}")
        latency = self.latency  # the table is read and checked here, before any model
        if self.target_speedup is not None and latency is None:
            speedup.SpeedupOptions.of(self.target_speedup, self.speedup_search).validate()
        if isinstance(self.ratio, str) and self.ratio != "auto":
            raise InputError(f"ratio must be a number in [0, 1) or 'auto', got '{self.ratio}'")
        ratio, threshold = self.ratio, self.threshold
        if self.searched:
            ratio, threshold = None, 0.0  # chosen below
        elif ratio is None and threshold is None:
            ratio = 0.5
        base = Policy(ratio, threshold, self.scope, self.aggregate, self.min_channels, self.round_to)  # type: ignore[arg-type]
        base.validate()
        return base

    @property
    def searched(self) -> bool:
        """Whether the threshold is chosen from the analysis (cases 2-5)."""
        return self.ratio == "auto" or any(
            t is not None
            for t in (self.target_macs, self.target_params, self.target_speedup, self.target_latency)
        )


@dataclass(frozen=True)
class Choice:
    plan: Plan
    policy: Policy
    section: PolicySection


def choose_plan(
    analysis: Analysis,
    scores: Scores,
    request: PlanRequest,
    before: Cost,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Progress | None = None,
    whole_groups: frozenset[int] = frozenset(),
) -> Choice:
    """Cases 1-5 on one analysis of the model (not yet rewritten)."""
    base = request.base_policy()
    if request.latency is not None:
        knapsack = search_latency(analysis, scores, base, request.latency, whole_groups)
        return Choice(knapsack.plan, knapsack.policy, _section(
            request, knapsack.policy, latency=LatencySection.of(knapsack.report)
        ))  # fmt: skip
    if request.ratio == "auto":
        return _auto(analysis, scores, request, base, whole_groups)
    if request.target_macs is not None or request.target_params is not None:
        metric = "macs" if request.target_macs is not None else "params"
        fraction = request.target_macs if metric == "macs" else request.target_params
        assert fraction is not None
        result = targets.search_target(
            analysis, scores, base, build_cost_model(analysis, before), metric, fraction
        )
        return Choice(result.plan, result.policy, _section(
            request, result.policy, target=(metric, fraction), search=_search(metric, result)
        ))  # fmt: skip
    if request.target_speedup is not None:
        options = speedup.SpeedupOptions.of(request.target_speedup, request.speedup_search)
        cost_model = build_cost_model(analysis, before)
        with speedup.bench_measure(analysis, before, input_shapes, options) as measure:
            result, found = speedup.search_speedup(
                analysis, scores, base, cost_model, options, measure, progress
            )
        return Choice(result.plan, result.policy, _section(
            request, result.policy, search=_search("macs", result), speedup=found
        ))  # fmt: skip
    plan = make_plan(analysis, scores, base, whole_groups=whole_groups)
    return Choice(plan, base, _section(request, base))


def _auto(
    analysis: Analysis, scores: Scores, request: PlanRequest, base: Policy,
    whole_groups: frozenset[int],
) -> Choice:  # fmt: skip
    cut = targets.auto_threshold(targets.prunable_importances(analysis, scores, base.aggregate))
    if base.scope == "local":
        policy = dataclasses.replace(base, ratio=cut.fraction_below, threshold=None)
    else:
        policy = dataclasses.replace(base, ratio=None, threshold=cut.threshold)
    logger.info(
        "ratio auto: threshold %.6g at the valley between modes %.4g and %.4g "
        "(Ashman's D %.2f); %.1f%% of the prunable channels lie below it",
        cut.threshold, cut.means[0], cut.means[1], cut.separation, 100 * cut.fraction_below,
    )  # fmt: skip
    plan = make_plan(analysis, scores, policy, whole_groups=whole_groups)
    return Choice(plan, policy, _section(request, policy, auto=cut.to_dict()))


def _search(metric: str, result: targets.SearchResult) -> dict[str, Any]:
    return {"metric": metric, "estimate_macs": result.estimate[0],
            "estimate_params": result.estimate[1], "steps": result.steps,
            "kept_below_threshold": result.skipped_channels}  # fmt: skip


def _section(request: PlanRequest, policy: Policy, **chosen: Any) -> PolicySection:
    return PolicySection(
        ratio=request.ratio if request.ratio == "auto" else policy.ratio,
        threshold=policy.threshold,
        scope=request.scope,
        aggregate=request.aggregate,
        min_channels=request.min_channels,
        round_to=request.round_to,
        **chosen,
    )
