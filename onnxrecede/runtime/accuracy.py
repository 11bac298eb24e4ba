"""The accuracy comparison of a cut and its gate (``prune --eval-data --max-accuracy-drop``).

1. Both models are evaluated on the same labelled samples (:func:`onnxrecede.runtime.evaluate.
   evaluate`; a seeded subset with ``limit``), the original first.
2. The drop is in percentage points of top-1 (original minus pruned), rounded to 1e-4.
3. The gate (:meth:`AccuracyComparison.check`) raises :class:`AccuracyDropError` (exit 6) when
   the drop exceeds ``max_drop``; callers run it after the pruned model is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onnxrecede.data.sources import ImageOptions, input_specs, open_samples
from onnxrecede.errors import AccuracyDropError, InputError
from onnxrecede.io.model_files import ModelSource
from onnxrecede.progress import Progress
from onnxrecede.runtime.evaluate import Accuracy, evaluate


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate on: ``data`` (labelled samples, any :func:`open_samples` source)."""

    data: str
    limit: int | None = None
    image: ImageOptions | None = None
    batch_size: int = 32
    max_drop: float | None = None  #: top-1 percentage points; None: report only

    def validate(self) -> None:
        if self.max_drop is not None and self.max_drop < 0:
            raise InputError(f"--max-accuracy-drop must be >= 0 points, got {self.max_drop}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--eval-limit must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise InputError(f"the evaluation batch size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class AccuracyComparison:
    """Accuracy of the original and the pruned model on the same samples (case 1-2)."""

    data: str
    samples: int
    original: Accuracy
    pruned: Accuracy
    max_drop: float | None = None

    @property
    def top1_drop_points(self) -> float:
        return round(100 * (self.original.top1 - self.pruned.top1), 4)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "samples": self.samples,
            "original": self.original.to_dict(),
            "pruned": self.pruned.to_dict(),
            "top1_drop_points": self.top1_drop_points,
            "max_drop_points": self.max_drop,
        }

    def format(self) -> str:
        o, p = self.original, self.pruned
        top5 = ""
        if o.top5 is not None and p.top5 is not None:
            top5 = f"   top-5 {100 * o.top5:.2f}% -> {100 * p.top5:.2f}%"
        return (
            f"accuracy on {self.samples} samples of {self.data}: top-1 {100 * o.top1:.2f}% "
            f"-> {100 * p.top1:.2f}% (drop {self.top1_drop_points:.2f} points){top5}"
        )

    def check(self) -> None:
        """Case 3: raise :class:`AccuracyDropError` when the drop exceeds ``max_drop``."""
        if self.max_drop is None or self.top1_drop_points <= self.max_drop:
            return
        raise AccuracyDropError(
            f"top-1 accuracy fell by {self.top1_drop_points:.2f} points "
            f"({100 * self.original.top1:.2f}% -> {100 * self.pruned.top1:.2f}%), "
            f"more than --max-accuracy-drop {self.max_drop:g}; the pruned model was written. "
            "Cut less, or add --reconstruct --calibration DATA"
        )


def compare_accuracy(
    original: ModelSource,
    pruned: ModelSource,
    options: EvalOptions,
    progress: Progress | None = None,
) -> AccuracyComparison:
    """Cases 1-2: evaluate both models on ``options.data``."""
    options.validate()
    samples = open_samples(options.data, input_specs(original), image=options.image, limit=options.limit)
    before = evaluate(original, samples, batch_size=options.batch_size, progress=progress)
    after = evaluate(pruned, samples, batch_size=options.batch_size, progress=progress)
    return AccuracyComparison(samples.description, len(samples), before, after, options.max_drop)
