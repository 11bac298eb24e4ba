"""Proofs that a pruned model is valid and computes what it should.

Checks, in order (the first failure stops and is reported; nothing is written):
1. ``onnx.checker`` full check (with shape inference);
2. per-op consistency, which the checker misses: Conv/ConvTranspose input channels against the
   weight, bias length against output channels, per-channel norm parameters, Gemm/MatMul inner
   dimensions;
3. an ONNX Runtime CPU run on seeded random inputs;
4. equality with the masked reference: the original model with every removed channel's
   consuming weights zeroed (an element fails only if abs diff > atol AND rel diff > rtol).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxrecede import runtime
from onnxrecede.engine.registry import rule_for
from onnxrecede.errors import RuntimeUnavailableError, VerificationError

logger = logging.getLogger(__name__)

#: protobuf cannot serialise more than 2 GiB; larger models go through files with external data
PROTO_LIMIT = 2**31 - 2**24


@dataclass
class VerifyReport:
    checker: str = "skipped"
    consistency: str = "skipped"
    ort_run: str = "skipped"
    masked_reference: str = "skipped"
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "consistency": self.consistency,
            "ort_run": self.ort_run,
            "masked_reference": self.masked_reference,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "notes": list(self.notes),
        }


def model_nbytes(model: ir.Model) -> int:
    return sum(
        v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None
    )


def embed_external_data(model: ir.Model) -> None:
    """Copy lazily read external tensors into memory, so the model serialises on its own."""
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if isinstance(tensor, ir.ExternalTensor):
            value.const_value = ir.Tensor(np.array(tensor.numpy()), name=value.name)


class _Materialised:
    """A model as bytes (small) or as a file with external data (large), for checker and ORT."""

    def __init__(self, model: ir.Model, tmp: str, name: str) -> None:
        self.proto: onnx.ModelProto | None = None
        self.path: str | None = None
        if model_nbytes(model) < PROTO_LIMIT:
            embed_external_data(model)
            self.proto = ir.serde.serialize_model(model)
            self.payload: bytes | str = self.proto.SerializeToString()
        else:
            self.path = os.path.join(tmp, f"{name}.onnx")
            ir.save(model, self.path, external_data=f"{name}.onnx.data")
            self.payload = self.path


def check_consistency(model: ir.Model) -> list[str]:
    """Per-op shape consistency problems, each as 'OpType 'name': what is wrong'.

    Asked of each op's rule: Conv/ConvTranspose input channels and bias, per-channel norm
    parameters, Gemm/MatMul inner dimensions.
    """
    problems: list[str] = []

    def dims(v: ir.Value | None) -> tuple[Any, ...] | None:
        if v is None:
            return None
        shape = v.const_value.shape if v.const_value is not None else v.shape
        return None if shape is None else tuple(shape)

    for node in model.graph:
        rule = rule_for(node)
        if rule is not None:  # each op's check lives on its rule (onnxrecede/engine/rules)
            problems.extend(rule.check(node, [dims(v) for v in node.inputs]))
    return problems


def verify(
    pruned: ir.Model,
    masked: ir.Model | None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
) -> VerifyReport:
    """Run every check; raise :class:`VerificationError` on the first failure."""
    report = VerifyReport()
    with tempfile.TemporaryDirectory(prefix="onnxrecede-verify-") as tmp:
        cand = _Materialised(pruned, tmp, "pruned")
        try:
            target: onnx.ModelProto | str = cand.proto if cand.proto is not None else str(cand.path)
            onnx.checker.check_model(target, full_check=True)
        except Exception as e:  # onnx raises ValidationError and InferenceError
            raise VerificationError(f"pruned model fails onnx.checker: {e}") from None
        report.checker = "passed"
        problems = check_consistency(pruned)
        if problems:
            raise VerificationError(
                "pruned model is inconsistent: "
                + "; ".join(problems[:5])
                + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
            )
        report.consistency = "passed"
        try:
            session = runtime.cpu_session(cand.payload)
        except RuntimeUnavailableError as e:
            report.notes.append(f"ONNX Runtime checks skipped: {e}")
            logger.warning("ONNX Runtime checks skipped: %s", e)
            return report
        except Exception as e:
            raise VerificationError(f"ONNX Runtime cannot load the pruned model: {e}") from None
        feeds = runtime.random_inputs(session, input_shapes, seed=seed)
        try:
            outputs = session.run(None, feeds)
        except Exception as e:
            raise VerificationError(f"ONNX Runtime fails to run the pruned model: {e}") from None
        report.ort_run = "passed"
        if masked is None:
            return report
        ref = _Materialised(masked, tmp, "masked")
        try:
            expected = runtime.cpu_session(ref.payload).run(None, feeds)
        except Exception as e:
            report.notes.append(f"masked reference could not run: {e}")
            report.masked_reference = "error"
            return report
        cmp = runtime.compare_outputs(expected, outputs, atol=atol, rtol=rtol)
        report.max_abs_diff = float(cmp["max_abs_diff"])
        report.max_rel_diff = float(cmp["max_rel_diff"])
        if cmp["failed"]:
            names = [o.name for o in session.get_outputs()]
            raise VerificationError(
                f"pruned model differs from the masked reference on outputs {', '.join(names)}: "
                f"{cmp['failed']} elements beyond atol={atol} and rtol={rtol} "
                f"(max abs diff {cmp['max_abs_diff']:.3g}, max rel diff {cmp['max_rel_diff']:.3g}). "
                "This is a bug in onnxrecede; please report it with the model (or use --no-verify "
                "at your own risk)"
            )
        report.masked_reference = "passed"
    return report
