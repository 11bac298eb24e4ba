"""``prune`` options for cut quality: ``--compensate``, ``--reconstruct``, ``--calibration``,
``--eval-data`` and the accuracy gate ``--max-accuracy-drop`` (exit 6)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from onnxrecede_cli.common import NON_NEGATIVE
from onnxrecede_cli.data_options import DATA_HELP, image_options, pop_image_options

from onnxrecede.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--compensate", is_flag=True,
                 help="Fold the removed channels' mean values into their consumers' biases "
                      "(from --calibration, else where the graph makes them constant)."),
    click.option("--reconstruct", is_flag=True,
                 help="Refit every consumer of removed channels by least squares on "
                      "--calibration data, layer by layer."),
    click.option("--calibration", default=None, metavar="DATA",
                 help=f"Unlabelled samples for --compensate/--reconstruct: {DATA_HELP}."),
    click.option("--calibration-limit", type=int, default=512, show_default=True, metavar="N",
                 help="Use a seeded random subset of at most N calibration samples."),
    click.option("--calibration-batch", type=int, default=32, show_default=True, metavar="N",
                 help="Samples per ONNX Runtime run while calibrating and evaluating."),
    click.option("--ridge", type=NON_NEGATIVE, default=1e-3, show_default=True,
                 help="--reconstruct: ridge term, relative to the mean diagonal of A^T A."),
    click.option("--max-rows", type=int, default=65536, show_default=True,
                 help="--reconstruct: rows (output positions) sampled per layer."),
    click.option("--eval-data", default=None, metavar="DATA",
                 help="Labelled samples: report the top-1/top-5 accuracy of the original and "
                      "the pruned model."),
    click.option("--eval-limit", type=int, default=None, metavar="N",
                 help="Evaluate a seeded random subset of N samples."),
    click.option("--max-accuracy-drop", type=NON_NEGATIVE, default=None, metavar="PTS",
                 help="With --eval-data: exit 6 when top-1 falls by more than PTS percentage "
                      "points (the pruned model is still written)."),
]  # fmt: skip


def quality_options(fn: F) -> F:
    """Add the cut-quality options (and the image options they share) to ``prune``."""
    fn = image_options(fn)
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


@dataclass
class Quality:
    """What the cut-quality options ask for, parsed and checked before any work."""

    repair: Any  # RepairOptions
    eval_data: str | None
    eval_limit: int | None
    batch: int
    image: Any  # ImageOptions
    max_drop: float | None

    @property
    def reads(self) -> list[tuple[str, str | None]]:
        """Data given as a file or folder, for the output-path guard."""
        found = [("--calibration", self.repair.calibration), ("--eval-data", self.eval_data)]
        return [(role, p) for role, p in found if p is not None and os.path.exists(p)]

    def accuracy(self, model: str, pruned: str, progress: Any) -> dict[str, Any] | None:
        """Both accuracies, or None without ``--eval-data``."""
        if self.eval_data is None:
            return None
        from onnxrecede.data.sources import input_specs, open_samples
        from onnxrecede.runtime.evaluate import evaluate

        samples = open_samples(self.eval_data, input_specs(model), image=self.image,
                               limit=self.eval_limit)  # fmt: skip
        before = evaluate(model, samples, batch_size=self.batch, progress=progress)
        after = evaluate(pruned, samples, batch_size=self.batch, progress=progress)
        return {
            "data": samples.description,
            "samples": len(samples),
            "original": before.to_dict(),
            "pruned": after.to_dict(),
            "top1_drop_points": round(100 * (before.top1 - after.top1), 4),
            "max_drop_points": self.max_drop,
        }

    def accuracy_search(self, steps: int) -> Any:
        """What ``--target-accuracy-drop`` evaluates on (checked when it is given)."""
        from onnxrecede.policy.accuracy_search import AccuracySearch

        return AccuracySearch(self.eval_data, steps, limit=self.eval_limit, batch_size=self.batch,
                              image=self.image)  # fmt: skip

    @staticmethod
    def format(acc: dict[str, Any] | None) -> str | None:
        if acc is None:
            return None
        o, p = acc["original"], acc["pruned"]
        top5 = ""
        if o["top5"] is not None:
            top5 = f"   top-5 {100 * o['top5']:.2f}% -> {100 * p['top5']:.2f}%"
        return (
            f"accuracy on {acc['samples']} samples of {acc['data']}: top-1 {100 * o['top1']:.2f}% "
            f"-> {100 * p['top1']:.2f}% (drop {acc['top1_drop_points']:.2f} points){top5}"
        )

    def check(self, acc: dict[str, Any] | None) -> None:
        """Exit 6 (AccuracyDropError) when the drop exceeds ``--max-accuracy-drop``."""
        if acc is None or self.max_drop is None:
            return
        from onnxrecede.errors import AccuracyDropError

        if acc["top1_drop_points"] > self.max_drop:
            raise AccuracyDropError(
                f"top-1 accuracy fell by {acc['top1_drop_points']:.2f} points "
                f"({100 * acc['original']['top1']:.2f}% -> {100 * acc['pruned']['top1']:.2f}%), "
                f"more than --max-accuracy-drop {self.max_drop:g}; the pruned model was written. "
                "Cut less, or add --reconstruct --calibration DATA"
            )


def pop_quality_options(kwargs: dict[str, Any], data_driven: bool = False) -> Quality:
    """Remove the cut-quality options from ``prune``'s keyword arguments and check them.

    ``data_driven``: no importances were given, so ``--calibration`` chooses the channels."""
    from onnxrecede.repair.steps import RepairOptions

    image = pop_image_options(kwargs)
    calibration = kwargs.pop("calibration")
    limit, batch = kwargs.pop("calibration_limit"), kwargs.pop("calibration_batch")
    for flag, value in (("--calibration-limit", limit), ("--calibration-batch", batch)):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}")
    repair = RepairOptions(
        compensate=kwargs.pop("compensate"),
        reconstruct=kwargs.pop("reconstruct"),
        calibration=calibration,
        image=image,
        limit=limit,
        batch_size=batch,
        ridge=kwargs.pop("ridge"),
        max_rows=kwargs.pop("max_rows"),
    )
    if data_driven and calibration is None:
        raise InputError(
            "no importances: give -i IMPORTANCES, or --calibration DATA to choose the channels "
            "from data (then the cut is reconstructed on it)"
        )
    if calibration is not None and not repair.active and not data_driven:
        raise InputError("--calibration is used by --compensate or --reconstruct; add one of them")
    repair.validate()
    q = Quality(repair, kwargs.pop("eval_data"), kwargs.pop("eval_limit"), batch, image,
                kwargs.pop("max_accuracy_drop"))  # fmt: skip
    if q.max_drop is not None and q.eval_data is None:
        raise InputError("--max-accuracy-drop needs --eval-data DATA (labelled samples)")
    if q.max_drop is not None and q.max_drop < 0:
        raise InputError(f"--max-accuracy-drop must be >= 0 points, got {q.max_drop}")
    if q.eval_limit is not None and q.eval_limit < 1:
        raise InputError(f"--eval-limit must be at least 1, got {q.eval_limit}")
    return q
