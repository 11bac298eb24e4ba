"""Output agreement between a reference and a candidate model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from onnxrecede.runtime.session import check_tolerances, compare_outputs


@dataclasses.dataclass(frozen=True)
class OutputAgreement:
    """Agreement of one output; diffs are None when the shapes differ or a value is NaN/inf.

    ``max_rel_diff`` is relative to the output's scale (max |reference|), and ``failed`` counts
    elements with abs diff > atol + rtol * scale (:func:`onnxrecede.runtime.compare_outputs`).
    """

    name: str
    reference_shape: tuple[int, ...]
    candidate_shape: tuple[int, ...]
    max_abs_diff: float | None
    max_rel_diff: float | None
    failed: int | None
    top1_agreement: float | None

    @property
    def shapes_match(self) -> bool:
        return self.reference_shape == self.candidate_shape

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "reference_shape": list(self.reference_shape),
            "candidate_shape": list(self.candidate_shape),
        }


@dataclasses.dataclass(frozen=True)
class Agreement:
    """Agreement over all outputs (matched by name, else by position)."""

    outputs: tuple[OutputAgreement, ...]
    atol: float
    rtol: float

    @property
    def shapes_match(self) -> bool:
        return all(o.shapes_match for o in self.outputs)

    @property
    def max_abs_diff(self) -> float | None:
        """Largest over all outputs; None if any output could not be compared."""
        return _worst([o.max_abs_diff for o in self.outputs])

    @property
    def max_rel_diff(self) -> float | None:
        return _worst([o.max_rel_diff for o in self.outputs])

    @property
    def top1_agreement(self) -> float | None:
        """Of the first output that looks like class scores (2-D ``[N, classes]``)."""
        return next((o.top1_agreement for o in self.outputs if o.top1_agreement is not None), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "top1_agreement": self.top1_agreement,
            "shapes_match": self.shapes_match,
            "atol": self.atol,
            "rtol": self.rtol,
            "outputs": [o.to_dict() for o in self.outputs],
        }


def _worst(values: Sequence[float | None]) -> float | None:
    if any(v is None for v in values):
        return None
    return max((float(v) for v in values if v is not None), default=0.0)


def compare_models_outputs(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    names: Sequence[str],
    candidate_names: Sequence[str] | None = None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Agreement:
    """Max abs/rel differences per output, plus top-1 agreement for ``[N, classes]`` scores."""
    check_tolerances(atol, rtol)
    by_name = dict(zip(candidate_names or names, candidate, strict=False))
    results = []
    for index, (name, ref) in enumerate(zip(names, reference, strict=True)):
        cand = by_name.get(name, candidate[index] if index < len(candidate) else None)
        ref_a = np.asarray(ref)
        cand_a = np.asarray(cand) if cand is not None else np.empty((0,))
        if ref_a.shape != cand_a.shape:
            results.append(OutputAgreement(name, ref_a.shape, cand_a.shape, None, None, None, None))
            continue
        diff = compare_outputs([ref_a], [cand_a], atol=atol, rtol=rtol, names=[name]).outputs[0]
        results.append(
            OutputAgreement(
                name,
                ref_a.shape,
                cand_a.shape,
                _finite(diff.max_abs_diff),
                _finite(diff.max_rel_diff),
                diff.failed,
                _top1(ref_a, cand_a),
            )
        )
    return Agreement(tuple(results), atol, rtol)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _top1(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Share of rows whose argmax agrees, when the output looks like class scores."""
    if reference.ndim != 2 or reference.shape[1] < 2 or reference.shape[0] < 1:
        return None
    if not np.issubdtype(reference.dtype, np.floating):
        return None
    same = np.argmax(reference, axis=1) == np.argmax(candidate, axis=1)
    return float(same.mean())
