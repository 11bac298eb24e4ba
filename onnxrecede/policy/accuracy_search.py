"""``--target-accuracy-drop PTS``: the largest MAC cut whose measured top-1 drop stays within PTS.

1. The original's top-1 on the evaluation data is measured once.
2. Bisection on the kept MAC fraction over ``(floor, 1)``: each step prunes with
   ``target_macs = mid`` (the same importances, policy and repair every step; channels chosen
   from data are scored once) and measures the pruned model's top-1. A drop within PTS moves
   the lower end down (cut more), else the upper end up.
3. The result is the smallest kept fraction that passed; the report records every step. When
   no step passed, :class:`~onnxrecede.errors.AccuracyDropError` (exit 6) names the best drop
   seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import onnx_ir as ir

from onnxrecede.errors import AccuracyDropError, InputError

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AccuracySearch:
    """The evaluation data (a source for ``open_samples`` or ``Samples``) and the search."""

    eval_data: Any
    steps: int = 5
    floor: float = 0.05
    limit: int | None = None
    batch_size: int = 32
    image: Any = None

    def validate(self, max_drop: float) -> None:
        if self.eval_data is None:
            raise InputError("--target-accuracy-drop needs --eval-data DATA (labelled samples)")
        if self.steps < 1:
            raise InputError(f"--search-steps must be positive, got {self.steps}")
        if not max_drop > 0 or max_drop != max_drop:
            raise InputError(f"--target-accuracy-drop must be a positive number, got {max_drop}")


def prune_to_accuracy(
    prune: Callable[..., tuple[ir.Model, Any]],
    model: Any,
    importances: Any,
    max_drop: float,
    search: AccuracySearch,
    progress: Progress | None = None,
    **options: Any,
) -> tuple[ir.Model, Any]:
    """Cases 1-3; ``prune`` is :func:`onnxrecede.api.prune`, called with ``options``."""
    from onnxrecede.data.sources import input_specs, open_samples
    from onnxrecede.io.model_files import load_model
    from onnxrecede.runtime.evaluate import evaluate

    search.validate(max_drop)
    original = load_model(model)
    samples = open_samples(search.eval_data, input_specs(original), image=search.image,
                           limit=search.limit)  # fmt: skip
    base = evaluate(original, samples, batch_size=search.batch_size).top1
    importances, options = _score_once(original, importances, options, progress)
    keep_ok, keep_bad = 1.0, search.floor
    best: tuple[ir.Model, Any] | None = None
    steps: list[dict[str, Any]] = []
    for step in range(search.steps):
        mid = (keep_ok + keep_bad) / 2
        pruned, report = prune(model, importances, target_macs=mid, progress=progress, **options)
        top1 = evaluate(pruned, samples, batch_size=search.batch_size).top1
        drop = 100 * (base - top1)
        ok = drop <= max_drop
        steps.append({"target_macs": mid, "macs_after": report.macs_after,
                      "top1": top1, "drop_points": drop, "within": ok})  # fmt: skip
        logger.info("accuracy search %d/%d: keep %.4f of the MACs -> top-1 %.2f%% "
                    "(drop %.2f points)%s", step + 1, search.steps, mid, 100 * top1, drop,
                    "" if ok else ", too much")  # fmt: skip
        if ok:
            keep_ok, best = mid, (pruned, report)
        else:
            keep_bad = mid
    if best is None:
        least = min(s["drop_points"] for s in steps)
        raise AccuracyDropError(
            f"no cut tried keeps the top-1 drop within {max_drop:g} points (the smallest cut, "
            f"keeping {steps[-1]['target_macs']:.4f} of the MACs, dropped {least:.2f}); give a "
            "larger --target-accuracy-drop, or --reconstruct --calibration DATA"
        )
    pruned, report = best
    report.policy["target_accuracy_drop"] = {
        "max_drop_points": max_drop, "original_top1": base, "steps": steps,
        "eval_samples": len(samples),
    }  # fmt: skip
    return pruned, report


def _score_once(
    model: ir.Model, importances: Any, options: dict[str, Any], progress: Progress | None
) -> tuple[Any, dict[str, Any]]:
    """Channels chosen from data are scored once, not at every step."""
    repair = options.get("repair")
    if importances is not None or repair is None or repair.calibration is None:
        return importances, options
    from onnxrecede.engine.analysis import analyze
    from onnxrecede.importance.selection import from_calibration

    imp, repair = from_calibration(analyze(model.clone()), repair, progress)
    return imp, {**options, "repair": repair}
