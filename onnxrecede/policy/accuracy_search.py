"""``--target-accuracy-drop PTS``: the largest MAC cut whose measured top-1 drop stays within PTS.

1. The original's top-1 on the evaluation data is measured once
   (:class:`~onnxrecede.runtime.accuracy.AccuracyReference`).
2. Candidates are MAC budgets (``target_macs`` cuts of the one analysis, see
   :mod:`onnxrecede.policy.targets`), each rewritten into a copy of the model, repaired as
   ``prune`` repairs (compensation / reconstruction: :func:`~onnxrecede.repair.steps.repaired_copy`)
   and evaluated on the same samples (:func:`accuracy_measure`); channels chosen from data are
   scored once, before the search.
3. Bisection on the kept MAC fraction over ``(lowest, 1)``, ``lowest`` the larger of ``floor``
   and the largest cut the barriers allow: a drop within PTS moves the lower end down (cut
   more), else the upper end up; ``steps`` candidates are measured.
4. The result is the passing candidate with the fewest MACs; the report records every step.
   When no step passed, :class:`~onnxrecede.errors.AccuracyDropError` (exit 6) names the
   smallest drop seen.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onnxrecede.checks import finite_number, known_keys, whole_number
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.budget import CostModel
from onnxrecede.engine.cost import Cost, count_cost
from onnxrecede.engine.plan import Plan, Policy
from onnxrecede.errors import AccuracyDropError, InputError
from onnxrecede.policy import targets
from onnxrecede.progress import Progress
from onnxrecede.repair.steps import RepairOptions, repaired_copy
from onnxrecede.report.sections import AccuracySearchSection
from onnxrecede.runtime.accuracy import AccuracyComparison, AccuracyReference, EvalOptions

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 5
DEFAULT_FLOOR = 0.05

#: the keys of ``prune(accuracy_search=...)``
SEARCH_OPTIONS = ("steps", "floor")


@dataclass(frozen=True)
class AccuracySearch:
    """``--target-accuracy-drop PTS``, the labelled samples it is measured on and the search
    (``accuracy_search`` of ``prune``: ``steps`` candidates, kept MAC fraction above ``floor``)."""

    max_drop: float
    evaluation: EvalOptions | None
    steps: int = DEFAULT_STEPS
    floor: float = DEFAULT_FLOOR

    @classmethod
    def of(
        cls, max_drop: float, search: Mapping[str, Any] | None, evaluation: EvalOptions | None
    ) -> AccuracySearch:
        return cls(max_drop, evaluation, **known_keys("accuracy_search", search, SEARCH_OPTIONS))

    def validate(self) -> None:
        finite_number("--target-accuracy-drop", self.max_drop, 0.0, exclusive=True)
        if self.evaluation is None:
            raise InputError("--target-accuracy-drop needs --eval-data DATA (labelled samples)")
        whole_number("accuracy_search steps (--search-steps)", self.steps)
        finite_number("accuracy_search floor", self.floor, 0.0, exclusive=True)
        if not self.floor < 1:
            raise InputError(f"accuracy_search floor must be below 1, got {self.floor}")
        self.evaluation.validate()


@dataclass(frozen=True)
class Measured:
    """One candidate: its accuracy against the original's, and its MACs counted after repair."""

    comparison: AccuracyComparison
    macs: int


Measure = Callable[[Plan], Measured]


@contextlib.contextmanager
def accuracy_measure(
    analysis: Analysis,
    input_shapes: Mapping[str, Sequence[int]] | None,
    options: AccuracySearch,
    repair: RepairOptions | None,
    progress: Progress | None = None,
) -> Iterator[tuple[AccuracyReference, Measure]]:
    """Case 1 and ``measure(plan)`` (case 2): the plan rewritten into a repaired copy of the
    analysed model, evaluated on the samples the original was (calibration data read once)."""
    assert options.evaluation is not None
    reference = AccuracyReference.measure(analysis.model, options.evaluation, progress)
    if repair is not None:
        repair = repair.opened(analysis.model)

    def measure(plan: Plan) -> Measured:
        pruned = repaired_copy(analysis, plan.keep_element, repair, progress)
        macs = count_cost(pruned, input_shapes).macs
        comparison = reference.compare(pruned, progress, max_drop=options.max_drop)
        return Measured(comparison, macs)

    yield reference, measure


def search_accuracy(
    analysis: Analysis,
    scores: targets.Scores,
    base: Policy,
    cost_model: CostModel,
    before: Cost,
    options: AccuracySearch,
    reference: AccuracyReference,
    measure: Measure,
) -> tuple[targets.SearchResult, AccuracySearchSection]:
    """Cases 3-4: the chosen MAC-budget cut and the search's report section."""
    lowest = max(options.floor, targets.smallest_fraction(analysis, scores, base, cost_model, "macs"))
    keep_ok, keep_bad = 1.0, lowest
    best: tuple[targets.SearchResult, float] | None = None
    steps: list[dict[str, Any]] = []
    for step in range(options.steps):
        mid = (keep_ok + keep_bad) / 2
        result = targets.search_target(analysis, scores, base, cost_model, "macs", mid)
        m = measure(result.plan)
        drop = float(m.comparison.top1_drop_points)
        ok = bool(drop <= options.max_drop)
        steps.append({"target_macs": mid, "macs_after": m.macs,
                      "macs_fraction": m.macs / max(before.macs, 1),
                      "top1": float(m.comparison.pruned.top1), "drop_points": drop, "within": ok})  # fmt: skip
        logger.info("accuracy search %d/%d: keep %.4f of the MACs -> top-1 %.2f%% "
                    "(drop %.2f points)%s", step + 1, options.steps, mid,
                    100 * m.comparison.pruned.top1, drop, "" if ok else ", too much")  # fmt: skip
        if ok:
            keep_ok, best = mid, (result, mid)
        else:
            keep_bad = mid
    if best is None:
        least = min(s["drop_points"] for s in steps)
        raise AccuracyDropError(
            f"no cut tried keeps the top-1 drop within {options.max_drop:g} points (the smallest "
            f"cut tried keeps {steps[-1]['target_macs']:.4f} of the MACs; the least drop seen was "
            f"{least:.2f}); give a larger --target-accuracy-drop, or --reconstruct --calibration DATA"
        )
    result, chosen = best
    return result, AccuracySearchSection(options.max_drop, {
        "data": reference.samples.description,
        "eval_samples": len(reference.samples),
        "original_top1": float(reference.original.top1),
        "lowest_target_macs": lowest,
        "chosen_target_macs": chosen,
        "steps": steps,
    })  # fmt: skip
