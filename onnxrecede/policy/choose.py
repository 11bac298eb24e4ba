"""Choosing the plan: the one policy stage of ``prune``, dispatching on what was asked for.

1. ``ratio`` / ``threshold`` (``ratio=0.5`` when nothing is given): :func:`make_plan` directly.
2. ``ratio="auto"``: the threshold at the valley of bimodal importances (:mod:`.targets`).
3. ``target_macs`` / ``target_params``: the budget search over plans costed from the one
   analysis (:mod:`.targets`).
4. ``target_speedup``: the speedup search (:mod:`.speedup`); each candidate plan is rewritten
   from the same analysis into a copy and timed against the original.
5. ``target_accuracy_drop``: the accuracy search (:mod:`.accuracy_search`); each candidate plan
   is rewritten from the same analysis into a copy, repaired as ``prune`` repairs, and
   evaluated against the original on ``evaluation``'s labelled samples.
6. ``latency_table`` with ``target_latency`` F (or ``target_speedup`` X, read as F = 1 / X):
   the knapsack over the table's measured steps (:mod:`.latency`); ``prune`` measures the cut
   once afterwards.

``whole_groups`` (cases 1, 2 and 6): groups that may lose every channel, taking their residual
branch with them (:mod:`onnxrecede.engine.branches`).

Exactly one of them may be given; every check happens before the model is loaded.

The scores the plan ranks (:func:`choose_scores`), by ``allocate`` and what was given:

a. importances, ``allocate="importances"``: their scores;
b. no importances: each channel's cost to its consumers after a least-squares refit on the
   calibration data (:func:`onnxrecede.importance.selection.from_calibration`); the cut is then
   reconstructed on the same samples;
c. importances, ``allocate="sensitivity"``: the importances order the channels inside each
   layer, the data costs of case b decide how many each layer loses (reconstructed too).
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
from onnxrecede.importance.file_format import Importances, scores_by_value
from onnxrecede.importance.selection import allocate_by_sensitivity, from_calibration
from onnxrecede.policy import speedup, targets
from onnxrecede.policy.accuracy_search import AccuracySearch, accuracy_measure, search_accuracy
from onnxrecede.policy.latency import LatencyTarget, search_latency
from onnxrecede.policy.latency_target import latency_target
from onnxrecede.policy.targets import Scores
from onnxrecede.progress import Progress
from onnxrecede.repair.steps import RepairOptions
from onnxrecede.report.sections import LatencySection, PolicySection
from onnxrecede.runtime.accuracy import EvalOptions

logger = logging.getLogger(__name__)

#: ``allocate``: how many channels each layer loses (cases a and c)
ALLOCATE = ("importances", "sensitivity")


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
    target_accuracy_drop: float | None = None
    accuracy_search: Mapping[str, Any] | None = None
    evaluation: EvalOptions | None = None  #: what case 5 evaluates on
    allocate: str = "importances"
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
                ("--target-accuracy-drop", self.target_accuracy_drop),
                ("--target-latency", self.target_latency),
            )
            if v is not None
        ]  # fmt: skip
        if len(given) > 1:
            raise InputError(f"give only one of {', '.join(given)}")
        latency = self.latency  # the table is read and checked here, before any model
        if self.target_speedup is not None and latency is None:
            speedup.SpeedupOptions.of(self.target_speedup, self.speedup_search).validate()
        if self.target_accuracy_drop is not None:
            self.accuracy_options().validate()
        if self.allocate not in ALLOCATE:
            raise InputError(
                f"allocate (--allocate) must be one of {', '.join(ALLOCATE)}, got {self.allocate!r}"
            )
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
            for t in (self.target_macs, self.target_params, self.target_speedup,
                      self.target_accuracy_drop, self.target_latency)
        )  # fmt: skip

    def accuracy_options(self) -> AccuracySearch:
        assert self.target_accuracy_drop is not None
        return AccuracySearch.of(
            self.target_accuracy_drop, self.accuracy_search, self.evaluation
        )

    def check_sources(self, importances_given: bool, repair: RepairOptions | None) -> None:
        """Cases b-c need calibration data (checked before any loading)."""
        if repair is not None and repair.calibration is not None:
            return
        if not importances_given:
            raise InputError(
                "no importances: give -i IMPORTANCES, or --calibration DATA to choose the "
                "channels from data (then the cut is reconstructed on it)"
            )
        if self.allocate == "sensitivity":
            raise InputError("--allocate sensitivity needs --calibration DATA")


@dataclass(frozen=True)
class Choice:
    plan: Plan
    policy: Policy
    section: PolicySection


def choose_scores(
    analysis: Analysis,
    importances: Importances | None,
    request: PlanRequest,
    repair: RepairOptions | None,
    progress: Progress | None = None,
) -> tuple[Scores, RepairOptions | None]:
    """Cases a-c: the scores the plan ranks, and the repair options the cut then gets (cases
    b-c: reconstruction on the calibration samples, read once)."""
    model = analysis.model
    if importances is None:
        importances, repair = from_calibration(analysis, repair, progress)
        return scores_by_value(model, importances), repair
    scores = scores_by_value(model, importances)
    if request.allocate == "sensitivity":
        costs, repair = from_calibration(analysis, repair, progress)
        scores = allocate_by_sensitivity(scores, scores_by_value(model, costs))
    return scores, repair


def choose_plan(
    analysis: Analysis,
    scores: Scores,
    request: PlanRequest,
    before: Cost,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Progress | None = None,
    repair: RepairOptions | None = None,
    whole_groups: frozenset[int] = frozenset(),
) -> Choice:
    """Cases 1-6 on one analysis of the model (not yet rewritten); ``repair``: how case 5
    repairs each candidate before evaluating it."""
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
    if request.target_accuracy_drop is not None:
        return _accuracy(analysis, scores, request, base, before, input_shapes, progress, repair)
    plan = make_plan(analysis, scores, base, whole_groups=whole_groups)
    return Choice(plan, base, _section(request, base))


def _accuracy(
    analysis: Analysis,
    scores: Scores,
    request: PlanRequest,
    base: Policy,
    before: Cost,
    input_shapes: Mapping[str, Sequence[int]] | None,
    progress: Progress | None,
    repair: RepairOptions | None,
) -> Choice:
    options = request.accuracy_options()
    cost_model = build_cost_model(analysis, before)
    with accuracy_measure(
        analysis, input_shapes, options, repair, progress
    ) as (reference, measure):
        result, found = search_accuracy(
            analysis, scores, base, cost_model, before, options, reference, measure
        )
    return Choice(result.plan, result.policy, _section(
        request, result.policy, search=_search("macs", result), accuracy=found
    ))  # fmt: skip


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
