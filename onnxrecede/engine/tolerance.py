"""The verdict on a pruned model's outputs against its masked reference's (verification step 4).

Rule, per output (``ref``: the masked reference's output, ``pruned``: the pruned model's, on the
same inputs and at the same ONNX Runtime optimisation level; ``scale`` = max |ref| over its finite
elements; ``atol``/``rtol`` default 1e-5):

1. Tolerance: an element passes iff ``|pruned - ref| <= atol + rtol * scale``.
2. Near zero: when ``scale < NEAR_ZERO * atol`` the absolute tolerance alone covers at least a
   tenth of the output's largest value, so rule 1 would accept nearly anything: the check is
   *vacuous* on these inputs. Such an output is judged relative to its scale instead:
   tolerance ``(atol + rtol) * scale``.
3. Nearly constant: when an output of more than one element has ``max(ref) - min(ref)`` within
   its tolerance, the inputs did not exercise it: named vacuous too (judged by rule 1).
4. Noise floor: an output that fails rules 1-2 is given its noise floor ``floor`` = max
   |ref - ref2| over its elements, where ``ref2`` is the same masked reference run at other
   optimisation levels (other fusions and kernels, hence sums in another order and another
   float rounding; the largest move counts). An element then
   passes iff ``|pruned - ref| <= max(tolerance, NOISE_FACTOR * floor)``: a difference the
   reference's own arithmetic explains is not a failure; one far above it is a bug (exit 4).
   The floor is only measured when needed, so a passing cut costs no second reference run.

Non-finite values: an element equal to its reference (NaN against NaN included) passes; any other
non-finite difference fails (:func:`onnxrecede.runtime.compare_outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxrecede.runtime import session as runtime

#: rule 2: an output whose largest value is below this many ``atol`` is near zero
NEAR_ZERO = 10.0
#: rule 4: an element passes within this many times its output's noise floor
NOISE_FACTOR = 10.0
#: a floor above this fraction of the output's scale makes the check weak (said in the report)
NOISY = 1e-2

RULE = (
    "|pruned - reference| <= max(atol + rtol * scale, "
    f"{NOISE_FACTOR:g} * noise floor) per output; scale = max |reference|; near-zero outputs "
    f"(scale < {NEAR_ZERO:g} * atol): (atol + rtol) * scale"
)


@dataclass(frozen=True)
class Verdict:
    """One output's comparison: the numbers of :class:`runtime.OutputDiff`, the tolerance it was
    held to, its noise floor (None when not measured) and why its check is vacuous (or None)."""

    diff: runtime.OutputDiff
    tolerance: float
    noise_floor: float | None
    vacuous: str | None

    @property
    def passed(self) -> bool:
        return self.diff.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.diff.to_dict(),
            "tolerance": _finite(self.tolerance),
            "noise_floor": None if self.noise_floor is None else _finite(self.noise_floor),
            "vacuous": self.vacuous,
        }

    def problem(self, shapes: tuple[Any, Any]) -> str:
        """What is wrong with a failed output, for the error message."""
        d = self.diff
        if d.shape_mismatch:
            return (
                f"output '{d.name}' has shape {shapes[1]} in the pruned model and {shapes[0]} "
                "in the masked reference"
            )
        floor = "" if self.noise_floor is None else f", noise floor {self.noise_floor:.3g}"
        return (
            f"output '{d.name}': {d.failed} of {d.size} elements beyond the tolerance "
            f"{self.tolerance:.3g} (scale = max |reference| = {d.scale:.3g}; max abs diff "
            f"{d.max_abs_diff:.3g}, {d.max_rel_diff:.3g} of the scale{floor})"
        )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def judge(
    expected: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    names: Sequence[str],
    atol: float,
    rtol: float,
    floors: Sequence[float] | None = None,
) -> list[Verdict]:
    """Rules 1-4 for every output; ``floors`` (one per output) once measured (rule 4)."""
    base = runtime.compare_outputs(expected, outputs, atol, rtol, names).outputs
    verdicts = []
    for i, diff in enumerate(base):
        if diff.shape_mismatch:
            verdicts.append(Verdict(diff, math.nan, None, None))
            continue
        ref = np.asarray(expected[i])
        tol, vacuous = _tolerance(ref, diff.scale, atol, rtol)
        floor = None if floors is None else floors[i]
        allowed = max(tol, NOISE_FACTOR * floor) if floor is not None else tol
        (held,) = runtime.compare_outputs([ref], [outputs[i]], allowed, 0.0, [diff.name]).outputs
        verdicts.append(Verdict(held, allowed, floor, vacuous))
    return verdicts


def _tolerance(ref: np.ndarray, scale: float, atol: float, rtol: float) -> tuple[float, str | None]:
    """Rules 1-3: the tolerance of one output and why its check is vacuous (or None)."""
    if scale < NEAR_ZERO * atol:
        return (atol + rtol) * scale, (
            f"near zero: max |reference| {scale:.3g} is below {NEAR_ZERO:g} x atol {atol:g}"
        )
    tol = atol + rtol * scale
    finite = ref[np.isfinite(ref)]
    if ref.size > 1 and finite.size and float(finite.max()) - float(finite.min()) <= tol:
        return tol, (
            f"nearly constant: every element lies within {tol:.3g} of {float(finite.min()):.6g}"
        )
    return tol, None


def noise_floors(reference: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> list[float]:
    """Rule 4: max |reference - second| per output (0 where they agree; inf where non-finite
    elements disagree)."""
    cmp = runtime.compare_outputs(reference, second, 0.0, 0.0)
    return [o.max_abs_diff for o in cmp.outputs[: len(reference)]]


def notes(verdicts: Sequence[Verdict]) -> list[str]:
    """Report lines for vacuous and noisy outputs."""
    lines = []
    for v in verdicts:
        if v.vacuous is not None:
            lines.append(f"output '{v.diff.name}': the check is vacuous ({v.vacuous})")
        floor, scale = v.noise_floor, v.diff.scale
        if floor is not None and scale > 0 and floor > NOISY * scale:
            lines.append(
                f"output '{v.diff.name}': the masked reference itself moves by {floor:.3g} "
                f"({floor / scale:.2g} of its scale) between optimisation levels; differences "
                "below that cannot be judged"
            )
    return lines
