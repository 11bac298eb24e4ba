"""``prune`` options for cut quality: ``--compensate``, ``--reconstruct``, ``--calibration``,
``--eval-data`` and the accuracy gate ``--max-accuracy-drop`` (exit 6)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click
from onnxrecede_cli.common import NON_NEGATIVE
from onnxrecede_cli.data_options import DATA_HELP, image_options, pop_image_options

from onnxrecede.errors import InputError

if TYPE_CHECKING:
    from onnxrecede.io.paths import Role

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
    evaluation: Any  # EvalOptions | None (the accuracy comparison and its gate, in the library)

    @property
    def reads(self) -> list[Role]:
        """Every file the calibration and evaluation data read, for the output-path guard."""
        from onnxrecede.io.paths import data_reads

        data = self.evaluation.data if self.evaluation is not None else None
        return [
            *data_reads(self.repair.calibration, "--calibration"),
            *data_reads(data, "--eval-data"),
        ]


def pop_quality_options(kwargs: dict[str, Any]) -> Quality:
    """Remove the cut-quality options from ``prune``'s keyword arguments and check them."""
    from onnxrecede.repair.steps import RepairOptions
    from onnxrecede.runtime.accuracy import EvalOptions

    image = pop_image_options(kwargs)
    calibration = kwargs.pop("calibration")
    limit, batch = kwargs.pop("calibration_limit"), kwargs.pop("calibration_batch")
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
    if calibration is not None and not repair.active:
        raise InputError("--calibration is used by --compensate or --reconstruct; add one of them")
    repair.validate()
    eval_data, eval_limit = kwargs.pop("eval_data"), kwargs.pop("eval_limit")
    max_drop = kwargs.pop("max_accuracy_drop")
    if max_drop is not None and eval_data is None:
        raise InputError("--max-accuracy-drop needs --eval-data DATA (labelled samples)")
    evaluation = None
    if eval_data is not None:
        evaluation = EvalOptions(eval_data, eval_limit, image, batch, max_drop)
        evaluation.validate()
    elif eval_limit is not None and eval_limit < 1:
        raise InputError(f"--eval-limit must be at least 1, got {eval_limit}")
    return Quality(repair, evaluation)
