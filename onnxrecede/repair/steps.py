"""Repairing a cut without fine-tuning: the steps ``prune`` runs around the rewrite.

1. Before the rewrite, on the original model: find the linear consumers of removed channels;
   with ``compensate``, measure (or read from the graph) the removed channels' expected values
   and apply the bias deltas to the masked reference, so that verification compares against the
   compensated reference; with ``reconstruct``, keep a copy of the original as the target.
2. After the rewrite: apply the same deltas to the pruned model (sliced to its kept outputs),
   then refit each consumer by least squares (:mod:`onnxrecede.reconstruct`).
3. With ``reconstruct`` the pruned model no longer equals a masked original: the masked
   reference check is dropped (checker, consistency and ORT run stay) and the per-consumer
   reconstruction errors are reported instead.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.checks import whole_number
from onnxrecede.data.sources import ImageOptions, Samples, input_specs, open_samples
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.verify import VerifyReport
from onnxrecede.errors import InputError
from onnxrecede.progress import Progress
from onnxrecede.repair.compensate import Compensation, plan_compensation, tap_means
from onnxrecede.repair.consumers import LinearConsumer, linear_consumers
from onnxrecede.repair.reconstruct import ReconstructOptions, reconstruct

logger = logging.getLogger(__name__)


#: what verification says in place of the masked-reference equality after a refit
RECONSTRUCTED = "replaced by the reconstruction error report (weights refitted)"


@dataclass(frozen=True)
class RepairOptions:
    """``compensate`` / ``reconstruct`` and the calibration data they read.

    ``calibration`` is any source :func:`onnxrecede.data.open_samples` accepts (or a
    :class:`~onnxrecede.data.Samples`); ``limit`` caps the samples used (a seeded subset).
    """

    compensate: bool = False
    reconstruct: bool = False
    calibration: Any = None
    image: ImageOptions | None = None
    limit: int | None = None
    batch_size: int = 32
    ridge: float = 1e-3
    max_rows: int = 65536

    @property
    def active(self) -> bool:
        return self.compensate or self.reconstruct

    def validate(self) -> None:
        if self.reconstruct and self.calibration is None:
            raise InputError("--reconstruct needs calibration data: give --calibration DATA")
        whole_number("--calibration-batch", self.batch_size)
        if self.limit is not None:
            whole_number("--calibration-limit", self.limit)
        ReconstructOptions(self.ridge, self.max_rows, self.batch_size).validate()


class CutRepair:
    """Runs the repair steps of one prune (see the module docstring)."""

    def __init__(self, options: RepairOptions, progress: Progress | None = None) -> None:
        options.validate()
        self.options = options
        self.progress = progress
        self.consumers: list[LinearConsumer] = []
        self.skipped: list[str] = []
        self.compensation: Compensation | None = None
        self.samples: Samples | None = None
        self.original: ir.Model | None = None
        self.reconstruction: dict[str, Any] | None = None

    def _open(self, model: ir.Model) -> Samples | None:
        source = self.options.calibration
        if source is None:
            return None
        if isinstance(source, Samples):
            return source
        samples = open_samples(
            source, input_specs(model), image=self.options.image, limit=self.options.limit
        )
        logger.info("calibration: %d samples from %s", len(samples), samples.description)
        return samples

    def before_rewrite(
        self, analysis: Analysis, keep_element: np.ndarray, masked: ir.Model | None
    ) -> ir.Model | None:
        """Step 1; returns the reference verification should compare against (or None)."""
        model = analysis.model
        self.consumers, self.skipped = linear_consumers(analysis, keep_element)
        self.samples = self._open(model)
        if self.options.compensate:
            means = None
            if self.samples is not None and self.consumers:
                means = tap_means(
                    model, self.consumers, self.samples, self.options.batch_size, self.progress
                )
            self.compensation = plan_compensation(analysis, self.consumers, means)
            if means is None and self.consumers and not self.compensation.deltas:
                logger.warning(
                    "warning: --compensate without --calibration found no removed channel that "
                    "is constant by construction; nothing was compensated (give --calibration "
                    "DATA to use measured means)"
                )
            if masked is not None:
                self.compensation.apply(masked.graph, dict(zip(model.graph, masked.graph)))
        if self.options.reconstruct:
            self.original = model.clone()
            return None
        return masked

    def after_rewrite(self, pruned: ir.Model) -> None:
        """Step 2, on the rewritten model (in place)."""
        if self.compensation is not None:
            self.compensation.apply(pruned.graph)
        if self.options.reconstruct:
            assert self.original is not None and self.samples is not None
            opts = ReconstructOptions(
                self.options.ridge, self.options.max_rows, self.options.batch_size
            )
            self.reconstruction = reconstruct(
                pruned, self.original, self.consumers, self.samples, opts, self.progress
            )
            self.original = None

    def report(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "calibration": None if self.samples is None else {
                "source": self.samples.description, "samples": len(self.samples)
            },
            "consumers_not_repaired": self.skipped,
        }  # fmt: skip
        if self.compensation is not None:
            doc["compensation"] = self.compensation.to_dict()
        if self.reconstruction is not None:
            doc["reconstruction"] = self.reconstruction
        return doc

    def verified(self, verification: VerifyReport) -> VerifyReport:
        """Step 3: the verification record, saying that the masked check was replaced."""
        if not self.options.reconstruct:
            return verification
        return dataclasses.replace(verification, masked_reference=RECONSTRUCTED)


def format_repair(doc: dict[str, Any] | None) -> list[str]:
    """Text lines for the ``repair`` part of a prune report."""
    if not doc:
        return []
    lines = []
    calib = doc.get("calibration")
    source = f"{calib['samples']} samples of {calib['source']}" if calib else "graph constants"
    comp = doc.get("compensation")
    if comp is not None:
        lines.append(
            f"compensation: biases of {len(comp['consumers'])} consumer(s) adjusted from {source}"
            + (f"; {len(comp['skipped'])} without a constant input" if comp["skipped"] else "")
        )
    rec = doc.get("reconstruction")
    if rec is not None:
        lines.append(
            f"reconstruction: least squares on {source}, ridge {rec['ridge']:g}, "
            f"at most {rec['max_rows']} rows per layer"
        )
        lines.append(
            "  consumer                        op      rows  inputs  rel. error before -> after"
        )
        for e in rec["consumers"]:
            lines.append(
                f"  {e['node'][:30]:<30}  {e['op_type']:<6}  {e['rows']:>6}  {e['kept_inputs']:>6}  "
                f"{e['relative_error_before']:.4f} -> {e['relative_error_after']:.4f}"
                + ("" if e["applied"] else "  (kept: no gain)")
            )
    for why in doc.get("consumers_not_repaired", []):
        lines.append(f"not repaired: {why}")
    return lines
