"""Least-squares reconstruction: refit each consumer of removed channels on calibration data.

The options and the entry point :func:`reconstruct`; the layers it reaches and how their rows are
built are in :mod:`onnxrecede.repair.linear_layers`, the algorithm (one run of the original for the
targets, one run per layer of the pruned model's needed nodes for the inputs, normal equations
accumulated per batch, rows from a global pool's input) in :mod:`onnxrecede.repair.refit`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import onnx_ir as ir

from onnxrecede.checks import number_problem, whole_number
from onnxrecede.data.sources import Samples
from onnxrecede.errors import InputError
from onnxrecede.progress import Progress
from onnxrecede.repair.consumers import LinearConsumer
from onnxrecede.repair.linear_layers import conv_rows as conv_patches
from onnxrecede.repair.refit import check_samples, collect_targets, plan_tasks, refit_layer

logger = logging.getLogger(__name__)


__all__ = ["ReconstructOptions", "conv_patches", "reconstruct"]


@dataclass(frozen=True)
class ReconstructOptions:
    ridge: float = 1e-3
    max_rows: int = 65536
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        if number_problem(self.ridge, 0.0) is not None:
            raise InputError(f"the ridge term must be >= 0 (--ridge), got {self.ridge}")
        whole_number("the row cap (--max-rows)", self.max_rows)


def reconstruct(
    pruned: ir.Model,
    original: ir.Model,
    consumers: list[LinearConsumer],
    samples: Samples,
    options: ReconstructOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Refit ``consumers`` of ``pruned`` in place, layer by layer; returns the error report.

    ``skipped`` lists the consumers that could not be refitted (with why), ``underdetermined``
    the refitted layers with fewer rows than unknowns per output."""
    options = options or ReconstructOptions()
    options.validate()
    check_samples(samples)
    tasks, skipped = plan_tasks(pruned, original, consumers)
    entries: list[dict[str, Any]] = []
    if tasks:
        collect_targets(original, tasks, samples, options, progress)
    for i, task in enumerate(tasks):
        stage = f"reconstruct {i + 1}/{len(tasks)} {task.consumer.name}"  # one bar per layer
        entries.append(refit_layer(pruned, task, samples, options, progress, stage))
    return {
        "ridge": options.ridge,
        "max_rows": options.max_rows,
        "calibration_samples": len(samples),
        "consumers": entries,
        "skipped": skipped,
        "underdetermined": [e["node"] for e in entries if e["rows"] < e["unknowns"]],
    }
