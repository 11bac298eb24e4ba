"""Proofs that a pruned model is valid and computes what it should.

Checks, in order (the first failure stops and is reported; nothing is written):
1. ``onnx.checker`` full check (with shape inference), on the model file;
2. per-op consistency, which the checker misses: Conv/ConvTranspose input channels against the
   weight, bias length against output channels, per-channel norm parameters, Gemm/MatMul inner
   dimensions;
3. an ONNX Runtime CPU run on seeded random inputs;
4. equality with the masked reference: the original model with every removed channel's
   consuming weights zeroed, run on the same inputs.

Tolerance rule of step 4, per output: with ``scale`` = max |reference| over that output's
finite elements, an element fails iff ``|pruned - reference| > atol + rtol * scale`` (defaults
1e-5 and 1e-5). Judging the difference against the output's scale, not each element's own
value, keeps float32 rounding noise in large activations (outputs around 1e5 and more, where a
near-zero element is the difference of large terms) from failing, while a removed channel that
still matters moves the output by a sizeable fraction of its scale and fails. The report gives,
per output, the max abs diff, the scale, and the max diff relative to the scale.

Memory: the checks work on files. A model given in memory is first written to a scratch file
with external data (tensor by tensor; the masked reference's zeroed weights are computed block
by block as they are written), ONNX Runtime maps those files instead of copying them, and only
one session lives at a time, so verification costs about one model's weights at a time.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxrecede.engine.registry import rule_for
from onnxrecede.errors import RuntimeUnavailableError, VerificationError
from onnxrecede.io import stream as streamio
from onnxrecede.runtime import session as runtime

logger = logging.getLogger(__name__)

ModelOrPath = ir.Model | str | os.PathLike[str]

TOLERANCE_RULE = "|pruned - reference| <= atol + rtol * max|reference| per output"


@dataclass
class VerifyReport:
    checker: str = "skipped"
    consistency: str = "skipped"
    ort_run: str = "skipped"
    masked_reference: str = "skipped"
    #: largest abs difference to the masked reference over all outputs
    max_abs_diff: float | None = None
    #: largest abs difference relative to its output's scale (max |reference|)
    max_rel_diff: float | None = None
    atol: float | None = None
    rtol: float | None = None
    #: per output: name, shape_mismatch, max_abs_diff, scale, max_rel_diff, failed, size
    outputs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checker": self.checker,
            "consistency": self.consistency,
            "ort_run": self.ort_run,
            "masked_reference": self.masked_reference,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "tolerance": {"atol": self.atol, "rtol": self.rtol, "rule": TOLERANCE_RULE},
            "outputs": [dict(o) for o in self.outputs],
            "notes": list(self.notes),
        }


def write_scratch(model: ir.Model, folder: str | os.PathLike[str], name: str) -> Path:
    """Write ``model`` to ``folder/name.onnx`` with its weights in ``name.onnx.data``."""
    path = Path(folder) / f"{name}.onnx"
    streamio.write_model(model, path, external_data=f"{name}.onnx.data")
    return path


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
    pruned: ModelOrPath,
    masked: ModelOrPath | None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    seed: int = 0,
    *,
    scratch: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Run every check; raise :class:`VerificationError` on the first failure.

    ``pruned`` and ``masked`` are models or model files (checked as written); models are written
    to scratch files in a temporary folder inside ``scratch`` (default: the system's), removed
    afterwards. When ``pruned`` is a file inside ``scratch`` itself, its large inline weights are
    read in place through a view beside it (removed afterwards).
    """
    runtime.check_tolerances(atol, rtol)
    report = VerifyReport(atol=float(atol), rtol=float(rtol))
    with (
        tempfile.TemporaryDirectory(prefix=".onnxrecede-verify-", dir=scratch) as tmp,
        ThreadPoolExecutor(1, thread_name_prefix="onnxrecede-masked") as pool,
    ):
        # the masked reference is written (mostly I/O) while the pruned model is checked
        reference: Future[Path] | None = None
        if isinstance(masked, ir.Model):
            reference = pool.submit(write_scratch, masked, tmp, "masked")
        try:
            _verify_pruned(pruned, masked, reference, input_shapes, seed, scratch, tmp, report)
        finally:
            if reference is not None:
                reference.cancel()
                wait([reference])  # before the folder is removed
    return report


def _verify_pruned(
    pruned: ModelOrPath,
    masked: ModelOrPath | None,
    reference: Future[Path] | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
    scratch: str | os.PathLike[str] | None,
    tmp: str,
    report: VerifyReport,
) -> None:
    if isinstance(pruned, ir.Model):
        path = write_scratch(pruned, tmp, "pruned")
    else:
        path = _mapped_view(Path(os.fspath(pruned)), scratch)
    try:
        _check_file(path, report)
        ran = _run(path, input_shapes, seed, report)
    finally:
        if path.parent == Path(os.fspath(scratch or tmp)) and path.name.startswith(".view-"):
            path.unlink(missing_ok=True)
    if ran is None or masked is None:
        return
    names, feeds, outputs = ran
    try:
        target = reference.result() if reference is not None else masked
        session = runtime.cpu_session(os.fspath(target), low_memory=True)  # type: ignore[arg-type]
        expected = session.run(None, feeds)
        del session
    except Exception as e:
        report.notes.append(f"masked reference could not run: {e}")
        report.masked_reference = "error"
        return
    gc.collect()
    _compare(expected, outputs, names, report)


def _mapped_view(path: Path, scratch: str | os.PathLike[str] | None) -> Path:
    """``path``, or where the caller's scratch folder holds it, a view of it whose weights are
    external references into it (:func:`streamio.external_view`): the checker and ONNX Runtime
    then read the file's own bytes without parsing and copying them."""
    if scratch is None or path.resolve().parent != Path(os.fspath(scratch)).resolve():
        return path
    view = path.with_name(f".view-{path.name}")
    return view if streamio.external_view(path, view) else path


def _check_file(path: Path, report: VerifyReport) -> None:
    try:
        onnx.checker.check_model(os.fspath(path), full_check=True)
    except Exception as e:  # onnx raises ValidationError and InferenceError
        raise VerificationError(f"pruned model fails onnx.checker: {e}") from None
    report.checker = "passed"
    problems = check_consistency(streamio.load(path))
    if problems:
        raise VerificationError(
            "pruned model is inconsistent: "
            + "; ".join(problems[:5])
            + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        )
    report.consistency = "passed"


def _run(
    path: ModelOrPath,
    input_shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
    report: VerifyReport,
) -> tuple[list[str], dict[str, np.ndarray], list[np.ndarray]] | None:
    """Output names, feeds and outputs of one run of the pruned model; None without a runtime."""
    try:
        session = runtime.cpu_session(os.fspath(path), low_memory=True)  # type: ignore[arg-type]
    except RuntimeUnavailableError as e:
        report.notes.append(f"ONNX Runtime checks skipped: {e}")
        logger.warning("ONNX Runtime checks skipped: %s", e)
        return None
    except Exception as e:
        raise VerificationError(f"ONNX Runtime cannot load the pruned model: {e}") from None
    feeds = runtime.random_inputs(session, input_shapes, seed=seed)
    names = [o.name for o in session.get_outputs()]
    try:
        outputs = session.run(None, feeds)
    except Exception as e:
        raise VerificationError(f"ONNX Runtime fails to run the pruned model: {e}") from None
    del session
    gc.collect()
    report.ort_run = "passed"
    return names, feeds, outputs


def _compare(
    expected: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    names: Sequence[str],
    report: VerifyReport,
) -> None:
    assert report.atol is not None and report.rtol is not None
    cmp = runtime.compare_outputs(expected, outputs, report.atol, report.rtol, names)
    report.outputs = [o.to_dict() for o in cmp.outputs]
    report.max_abs_diff = float(cmp.max_abs_diff)
    report.max_rel_diff = float(cmp.max_rel_diff)
    if cmp.passed:
        report.masked_reference = "passed"
        return
    shapes = {n: (np.shape(e), np.shape(o)) for n, e, o in zip(names, expected, outputs)}
    problems = []
    for o in cmp.failures():
        if o.shape_mismatch:
            ref_shape, cand_shape = shapes.get(o.name, ("missing", "missing"))
            problems.append(
                f"output '{o.name}' has shape {cand_shape} in the pruned model and {ref_shape} "
                "in the masked reference"
            )
        else:
            problems.append(
                f"output '{o.name}': {o.failed} of {o.size} elements beyond atol + rtol * scale "
                f"(scale = max |reference| = {o.scale:.3g}; max abs diff {o.max_abs_diff:.3g}, "
                f"{o.max_rel_diff:.3g} of the scale)"
            )
    raise VerificationError(
        f"pruned model differs from the masked reference (atol={report.atol:g}, "
        f"rtol={report.rtol:g}): " + "; ".join(problems) + ". This is a bug in onnxrecede; "
        "please report it with the model (or use --no-verify at your own risk)"
    )
