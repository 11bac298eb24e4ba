"""``--target-speedup X``: the smallest cut that ONNX Runtime (CPU) measures at least X faster.

Cases:
1. Candidates are MAC budgets (``target_macs`` cuts, see :mod:`onnxrecede.engine.targets`), so
   one number orders them from no cut to the largest cut the barriers allow.
2. The largest cut is measured first; if it misses X the target is unreachable
   (:class:`SpeedupUnreachableError`, exit 5) and its measured speedup is reported.
3. Otherwise the MAC fraction is bisected between the largest cut (fast enough) and no cut
   (speedup 1) for ``rounds`` benchmark rounds; the result is the measured candidate with the
   most MACs that reached X. Every round is one interleaved ``bench`` comparison against the
   original (``seconds`` of timing), so the search costs about ``(rounds + 1) * seconds``.
4. The curve measured (threshold, MACs, latency, speedup) goes into the report.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxrecede.bench.gate import EXIT_TOO_SLOW
from onnxrecede.errors import InputError, OnnxRecedeError

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

DEFAULT_ROUNDS = 5
DEFAULT_SECONDS = 3.0


class SpeedupUnreachableError(OnnxRecedeError):
    """Even the largest cut is measured slower than the target speedup."""

    exit_code = EXIT_TOO_SLOW


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


def prune_to_speedup(
    model: Any,
    importances: Any,
    target: float,
    *,
    rounds: int = DEFAULT_ROUNDS,
    seconds: float = DEFAULT_SECONDS,
    threads: int | None = None,
    batch: int = 1,
    verify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Progress | None = None,
    repair: Any = None,
    **prune_options: Any,
) -> tuple[ir.Model, Any]:
    """Cases 1-4; returns the chosen pruned model and its report (``policy.speedup_search``).

    ``repair`` (compensation / reconstruction) changes weights, not shapes or latency: it is
    applied to the chosen cut only.
    """
    from onnxrecede import api
    from onnxrecede.io.model_files import load_model, save_model

    if not target > 1.0:
        raise InputError(f"--target-speedup must be above 1 (a speedup), got {target}")
    if rounds < 1:
        raise InputError(f"the speedup search needs at least 1 round, got {rounds}")
    shapes = dict(input_shapes or {})
    options = {"seconds": seconds, "threads": threads, "batch": batch}
    curve: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="onnxrecede-speedup-") as tmp:
        reference = Path(tmp) / "reference.onnx"
        save_model(load_model(model), reference)

        def candidate(fraction: float, checked: bool = False) -> tuple[ir.Model, Any, float]:
            pruned, report = api.prune(
                reference, importances, target_macs=fraction, verify=checked,
                input_shapes=input_shapes, **prune_options,
            )  # fmt: skip
            path = Path(tmp) / f"candidate-{len(curve)}.onnx"
            save_model(pruned, path)
            speedup, ref_s, cand_s = _measure(reference, path, shapes, options)
            os.unlink(path)
            point = {
                "target_macs": fraction,
                "threshold": report.policy.get("threshold"),
                "ratio": report.policy.get("ratio"),
                "macs_fraction": report.macs_after / report.macs_before,
                "ms_reference": 1e3 * ref_s,
                "ms_pruned": 1e3 * cand_s,
                "speedup": speedup,
            }
            curve.append(point)
            logger.info(
                "speedup search: %.3f of the MACs: %.3f ms vs %.3f ms, %.2fx",
                point["macs_fraction"], point["ms_pruned"], point["ms_reference"], speedup,
            )  # fmt: skip
            if progress is not None:
                progress("speedup search", len(curve), rounds + 1)
            return pruned, report, speedup

        largest = _largest_cut(reference, importances, input_shapes, prune_options)
        best = candidate(min(largest * 1.0000001, 0.999999))
        if best[2] < target:
            raise SpeedupUnreachableError(
                f"--target-speedup {target:g} is unreachable: the largest cut the barriers "
                f"allow (MACs {largest:.3f} of the original) runs {best[2]:.2f}x faster on CPU; "
                "ask for less, or see `onnxrecede inspect` for what blocks the rest"
            )
        lo, hi = best[1].macs_after / best[1].macs_before, 1.0
        for _ in range(rounds):
            mid = (lo + hi) / 2
            if hi - lo < 0.005:
                break
            trial = candidate(mid)
            if trial[2] >= target:
                best, lo = trial, trial[1].macs_after / trial[1].macs_before
            else:
                hi = mid
        chosen_fraction = best[1].policy["target_macs"]
        pruned, report = api.prune(
            reference, importances, target_macs=chosen_fraction, verify=verify,
            input_shapes=input_shapes, progress=progress, repair=repair, **prune_options,
        )  # fmt: skip
    report.policy.pop("target_macs", None)
    report.policy["target_speedup"] = target
    report.policy["speedup_search"] = {
        "rounds": len(curve),
        "seconds_per_round": seconds,
        "batch": batch,
        "chosen_target_macs": chosen_fraction,
        "measured_speedup": next(
            p["speedup"] for p in curve if p["target_macs"] == chosen_fraction
        ),
        "curve": sorted(curve, key=lambda p: p["macs_fraction"]),
    }
    return pruned, report


def _largest_cut(
    reference: Path,
    importances: Any,
    input_shapes: Mapping[str, Sequence[int]] | None,
    prune_options: Mapping[str, Any],
) -> float:
    """MAC fraction of the largest cut the barriers and ``min_channels`` allow (estimated)."""
    from onnxrecede import api
    from onnxrecede.policy.targets import UnreachableTargetError

    try:
        api.prune(reference, importances, target_macs=1e-9, verify=False,
                  input_shapes=input_shapes, **prune_options)  # fmt: skip
    except UnreachableTargetError as e:
        return e.reachable
    return 1e-9
