"""``--target-speedup X``: the smallest cut that ONNX Runtime (CPU) measures at least X faster.

Cases:
1. Candidates are MAC budgets (``target_macs`` cuts, see :mod:`onnxrecede.policy.targets`), so
   one number orders them from no cut to the largest cut the barriers allow. Every candidate
   is a plan of the one analysis, rewritten into a copy of the model and measured by
   ``measure(plan)`` (:func:`bench_measure`: an interleaved ``bench`` comparison on CPU).
2. The largest cut is measured first; if it misses X the target is unreachable
   (:class:`SpeedupUnreachableError`, exit 5) and its measured speedup is reported.
3. Otherwise the MAC fraction is bisected between the largest cut (fast enough) and no cut
   (speedup 1) for ``rounds`` benchmark rounds; the result is the measured candidate with the
   most MACs that reached X. Every round is one interleaved ``bench`` comparison against the
   original (``seconds`` of timing), so the search costs about ``(rounds + 1) * seconds``.
4. The curve measured (threshold, MACs, latency, speedup) goes into the report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxrecede.bench.gate import EXIT_TOO_SLOW
from onnxrecede.checks import finite_number, whole_number
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.budget import CostModel
from onnxrecede.engine.cost import Cost, count_cost
from onnxrecede.engine.plan import Plan, Policy
from onnxrecede.engine.rewrite import pruned_copy
from onnxrecede.errors import InputError, OnnxRecedeError
from onnxrecede.io.model_files import save_model
from onnxrecede.policy import targets
from onnxrecede.progress import Progress
from onnxrecede.report.sections import SpeedupSection

logger = logging.getLogger(__name__)

DEFAULT_ROUNDS = 5
DEFAULT_SECONDS = 3.0


class SpeedupUnreachableError(OnnxRecedeError):
    """Even the largest cut is measured slower than the target speedup."""

    exit_code = EXIT_TOO_SLOW


#: the keys of ``prune(speedup_search=...)``
SEARCH_OPTIONS = ("rounds", "seconds", "threads", "batch")


@dataclass(frozen=True)
class SpeedupOptions:
    """``--target-speedup X`` and how the search times (``speedup_search`` of ``prune``)."""

    target: float
    rounds: int = DEFAULT_ROUNDS
    seconds: float = DEFAULT_SECONDS
    threads: int | None = None
    batch: int = 1

    @classmethod
    def of(cls, target: float, search: Mapping[str, Any] | None) -> SpeedupOptions:
        given = dict(search or {})
        unknown = [repr(k) for k in given if k not in SEARCH_OPTIONS]
        if unknown:
            raise InputError(
                f"speedup_search has unknown keys {', '.join(unknown)}; the known keys are "
                f"{', '.join(SEARCH_OPTIONS)}"
            )
        return cls(target, **given)

    def validate(self) -> None:
        finite_number("--target-speedup", self.target)
        if not self.target > 1.0:
            raise InputError(f"--target-speedup must be above 1 (a speedup), got {self.target}")
        whole_number("speedup_search rounds (--search-rounds)", self.rounds)
        finite_number("speedup_search seconds (--search-seconds)", self.seconds, 0.0, exclusive=True)
        whole_number("speedup_search batch", self.batch)
        if self.threads is not None:
            whole_number("speedup_search threads", self.threads)


@dataclass(frozen=True)
class Timing:
    """One candidate measured against the original."""

    speedup: float
    ms_reference: float
    ms_pruned: float
    macs_fraction: float  #: counted on the rewritten candidate


Measure = Callable[[Plan], Timing]


def _measure(
    reference: Path, candidate: Path, shapes: Mapping[str, Sequence[int]], options: dict[str, Any]
) -> tuple[float, float, float]:
    """(speedup, reference median s, candidate median s) of one interleaved comparison."""
    from onnxrecede.bench import BenchOptions, compare

    bench = BenchOptions(
        providers=("cpu",),
        batches=(int(options.get("batch", 1)),),
        shapes={k: tuple(int(d) for d in v) for k, v in shapes.items()},
        threads=options.get("threads"),
        seconds=float(options.get("seconds", DEFAULT_SECONDS)),
        bootstrap=200,
    )
    result = compare(reference, candidate, bench)
    config = result.configurations[0]
    speedup = config.comparisons[0].speedup.value
    return speedup, config.latency[0].median, config.latency[1].median


@contextlib.contextmanager
def bench_measure(
    analysis: Analysis,
    before: Cost,
    input_shapes: Mapping[str, Sequence[int]] | None,
    options: SpeedupOptions,
) -> Iterator[Measure]:
    """``measure(plan)``: the plan rewritten into a copy of the analysed model, timed on CPU
    against the original (written once to a scratch folder, removed afterwards)."""
    shapes = dict(input_shapes or {})
    timing = {"seconds": options.seconds, "threads": options.threads, "batch": options.batch}
    with tempfile.TemporaryDirectory(prefix="onnxrecede-speedup-") as tmp:
        reference = Path(tmp) / "reference.onnx"
        save_model(analysis.model, reference)

        def measure(plan: Plan) -> Timing:
            pruned = pruned_copy(analysis, plan.keep_element)
            path = Path(tmp) / "candidate.onnx"
            save_model(pruned, path)
            macs = count_cost(pruned, input_shapes).macs
            del pruned
            speedup, ref_s, cand_s = _measure(reference, path, shapes, timing)
            os.unlink(path)
            return Timing(speedup, 1e3 * ref_s, 1e3 * cand_s, macs / max(before.macs, 1))

        yield measure


def search_speedup(
    analysis: Analysis,
    scores: targets.Scores,
    base: Policy,
    cost_model: CostModel,
    options: SpeedupOptions,
    measure: Measure,
    progress: Progress | None = None,
) -> tuple[targets.SearchResult, SpeedupSection]:
    """Cases 1-4: the chosen MAC-budget cut and the search's report section."""
    options.validate()
    target = options.target
    curve: list[dict[str, Any]] = []

    def candidate(fraction: float) -> tuple[targets.SearchResult, Timing, float]:
        result = targets.search_target(analysis, scores, base, cost_model, "macs", fraction)
        t = measure(result.plan)
        curve.append({
            "target_macs": fraction,
            "threshold": result.policy.threshold,
            "ratio": result.policy.ratio,
            "macs_fraction": t.macs_fraction,
            "ms_reference": t.ms_reference,
            "ms_pruned": t.ms_pruned,
            "speedup": t.speedup,
        })  # fmt: skip
        logger.info(
            "speedup search: %.3f of the MACs: %.3f ms vs %.3f ms, %.2fx",
            t.macs_fraction, t.ms_pruned, t.ms_reference, t.speedup,
        )  # fmt: skip
        if progress is not None:
            progress("speedup search", len(curve), options.rounds + 1)
        return result, t, fraction

    largest = targets.smallest_fraction(analysis, scores, base, cost_model, "macs")
    best = candidate(min(largest * 1.0000001, 0.999999))
    if best[1].speedup < target:
        raise SpeedupUnreachableError(
            f"--target-speedup {target:g} is unreachable: the largest cut the barriers "
            f"allow (MACs {largest:.3f} of the original) runs {best[1].speedup:.2f}x faster on "
            "CPU; ask for less, or see `onnxrecede inspect` for what blocks the rest"
        )
    lo, hi = best[1].macs_fraction, 1.0
    for _ in range(options.rounds):
        mid = (lo + hi) / 2
        if hi - lo < 0.005:
            break
        trial = candidate(mid)
        if trial[1].speedup >= target:
            best, lo = trial, trial[1].macs_fraction
        else:
            hi = mid
    result, timing, chosen = best
    return result, SpeedupSection(target, {
        "rounds": len(curve),
        "seconds_per_round": options.seconds,
        "batch": options.batch,
        "chosen_target_macs": chosen,
        "measured_speedup": timing.speedup,
        "curve": sorted(curve, key=lambda p: p["macs_fraction"]),
    })  # fmt: skip
