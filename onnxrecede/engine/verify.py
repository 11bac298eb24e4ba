"""Proofs that a pruned model is valid and computes what it should.

Checks, in order (the first failure stops and is reported; nothing is written):
1. ``onnx.checker`` full check (with shape inference), on the model file;
2. per-op consistency, which the checker misses: Conv/ConvTranspose input channels against the
   weight, bias length against output channels, per-channel norm parameters, Gemm/MatMul inner
   dimensions;
3. an ONNX Runtime CPU run on the verification inputs;
4. equality with the masked reference: the original model with every removed channel's
   consuming weights zeroed, run on the same inputs, judged by the rule of
   :mod:`onnxrecede.engine.tolerance` (scale-relative tolerance, vacuous outputs named, a noise
   floor from a second optimisation level when an output is off).

Inputs: real samples when given (``samples``: the first :data:`VERIFY_SAMPLES` of the
calibration or evaluation data), else seeded N(0, 1) inputs (one batch).

Both models run at ONNX Runtime's ``extended`` optimisation level (every fusion, but not the
layout transforms of ``all``, which copy each convolution weight into a blocked layout: seconds
and one more copy of the model). Only when an output is off by more than the tolerance is the
noise floor measured: the reference runs again at ``all`` and at ``disabled`` (that costs the
copy and the seconds, once).

Memory: the checks work on files. A model given in memory is first written to a scratch file
with external data (tensor by tensor; the masked reference's zeroed weights are computed block
by block as they are written), ONNX Runtime maps those files instead of copying them, and only
one session lives at a time, so verification costs about one model's weights at a time. The
masked reference is written to a RAM-backed folder (``/dev/shm``) when it has room and the
machine has at least twice its weights available (writing it to disk costs seconds of I/O for
weights read once), else beside the other scratch files.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxrecede.data.sources import Samples
from onnxrecede.engine import tolerance
from onnxrecede.engine.registry import rule_for
from onnxrecede.errors import RuntimeUnavailableError, VerificationError
from onnxrecede.io import stream as streamio
from onnxrecede.io.model_files import initializer_bytes
from onnxrecede.runtime import session as runtime

logger = logging.getLogger(__name__)


def stage(name: str) -> None:
    """Mark the start of a verification stage in the debug log (the cost benchmark reads it)."""
    logger.debug("stage %s", name)


ModelOrPath = ir.Model | str | os.PathLike[str]

TOLERANCE_RULE = tolerance.RULE
#: real samples verification runs on, at most (the first of the data's seeded subset)
VERIFY_SAMPLES = 4
#: the optimisation level both models run at, and the reference's others (noise floor)
MAIN_LEVEL, FLOOR_LEVELS = "extended", ("all", "disabled")
#: a RAM-backed folder for the masked reference (used when it has room; see the docstring)
RAM_SCRATCH = Path("/dev/shm")

Feeds = list[dict[str, np.ndarray]]


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
    #: what the models ran on: ``source`` (a data description or "random N(0, 1)"), ``samples``
    inputs: dict[str, Any] = field(default_factory=dict)
    #: per output: name, shape_mismatch, max_abs_diff, scale, max_rel_diff, failed, size,
    #: tolerance, noise_floor (None: not measured), vacuous (None, or why the check is vacuous)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: names of the outputs whose check is vacuous on these inputs
    vacuous: list[str] = field(default_factory=list)
    #: the optimisation levels of the noise floor, when it was measured
    noise_floor_levels: list[str] | None = None
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
            "inputs": dict(self.inputs),
            "outputs": [dict(o) for o in self.outputs],
            "vacuous": list(self.vacuous),
            "noise_floor_levels": self.noise_floor_levels,
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
    samples: Samples | None = None,
) -> VerifyReport:
    """Run every check; raise :class:`VerificationError` on the first failure.

    ``pruned`` and ``masked`` are models or model files (checked as written); models are written
    to scratch files in a temporary folder inside ``scratch`` (default: the system's; the masked
    reference possibly in RAM, see the module docstring), removed afterwards. When ``pruned`` is
    a file inside ``scratch`` itself, its large inline weights are read in place through a view
    beside it (removed afterwards). ``samples``: real inputs (else seeded random ones).
    """
    runtime.check_tolerances(atol, rtol)
    report = VerifyReport(atol=float(atol), rtol=float(rtol))
    with ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix=".onnxrecede-verify-", dir=scratch)
        )
        pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="onnxrecede-masked"))
        # the masked reference is written (mostly I/O) while the pruned model is checked
        reference: Future[Path] | None = None
        if isinstance(masked, ir.Model):
            streamio.release_mapped(masked)  # its writer reads what it needs with pread
            folder = _reference_folder(masked, tmp, stack)
            reference = pool.submit(write_scratch, masked, folder, "masked")
        try:
            run = _Run(input_shapes, seed, samples, report)
            _verify_pruned(pruned, masked, reference, run, scratch, tmp)
        finally:
            if reference is not None:
                reference.cancel()
                wait([reference])  # before the folder is removed
    return report


def _reference_folder(masked: ir.Model, tmp: str, stack: ExitStack) -> str:
    """Where the masked reference is written: a RAM-backed temporary folder when it has room
    for the weights and the machine has twice them available, else ``tmp``."""
    need = initializer_bytes(masked)
    try:
        room = shutil.disk_usage(RAM_SCRATCH).free
    except OSError:
        return tmp
    if room < need + (64 << 20) or _available_memory() < 2 * need:
        return tmp
    return stack.enter_context(tempfile.TemporaryDirectory(prefix=".onnxrecede-verify-",
                                                           dir=RAM_SCRATCH))  # fmt: skip


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _Run:
    """The verification inputs and how the models run on them."""

    def __init__(
        self,
        input_shapes: Mapping[str, Sequence[int]] | None,
        seed: int,
        samples: Samples | None,
        report: VerifyReport,
    ) -> None:
        self.input_shapes = input_shapes
        self.seed = seed
        self.samples = samples
        self.report = report
        self.feeds: Feeds = []

    def make_feeds(self, session: Any) -> None:
        """Feeds for ``session``'s inputs: batches of real samples, or one random batch."""
        if self.samples is None:
            self.feeds = [runtime.random_inputs(session, self.input_shapes, seed=self.seed)]
            self.report.inputs = {"source": f"random N(0, 1), seed {self.seed}", "samples": 1}
            return
        fixed = _fixed_batch(session)
        count = 0
        for batch in self.samples.batches(fixed or VERIFY_SAMPLES):
            n = len(next(iter(batch.feeds.values())))
            feeds = batch.feeds
            if fixed is not None and n < fixed:  # pad a short last batch with its last sample
                feeds = {k: np.concatenate([v, np.repeat(v[-1:], fixed - n, 0)])
                         for k, v in feeds.items()}  # fmt: skip
            self.feeds.append(feeds)
            count += n
            if count >= VERIFY_SAMPLES:
                break
        self.report.inputs = {"source": self.samples.description, "samples": count}

    def outputs(self, session: Any) -> list[np.ndarray]:
        """Each output of ``session`` over every feed, concatenated along the first axis."""
        runs = [session.run(None, feeds) for feeds in self.feeds]
        return [np.concatenate([np.atleast_1d(r[i]) for r in runs]) for i in range(len(runs[0]))]


def _fixed_batch(session: Any) -> int | None:
    """The batch size the model's inputs fix (their common static first dim), or None."""
    firsts = {i.shape[0] if i.shape else None for i in session.get_inputs()}
    if len(firsts) == 1:
        (first,) = firsts
        return first if isinstance(first, int) and first > 0 else None
    return None


def _session(path: Path | str, level: str = MAIN_LEVEL) -> Any:
    return runtime.cpu_session(os.fspath(path), low_memory=True, level=level)


def _verify_pruned(
    pruned: ModelOrPath,
    masked: ModelOrPath | None,
    reference: Future[Path] | None,
    run: _Run,
    scratch: str | os.PathLike[str] | None,
    tmp: str,
) -> None:
    report = run.report
    if isinstance(pruned, ir.Model):
        stage("write pruned")
        path = write_scratch(pruned, tmp, "pruned")
    else:
        path = _mapped_view(Path(os.fspath(pruned)), scratch)
    try:
        stage("checker")
        _check_file(path, report)
        stage("ort pruned")
        ran = _run_pruned(path, run)
    finally:
        if path.parent == Path(os.fspath(scratch or tmp)) and path.name.startswith(".view-"):
            path.unlink(missing_ok=True)
    if ran is None or masked is None:
        return
    names, outputs = ran
    try:
        stage("masked reference build")
        target = reference.result() if reference is not None else masked
        stage("reference session")
        expected = run.outputs(_session(target))  # type: ignore[arg-type]
    except Exception as e:
        report.notes.append(f"masked reference could not run: {e}")
        report.masked_reference = "error"
        return
    gc.collect()
    stage("comparison")
    verdicts = tolerance.judge(expected, outputs, names, report.atol or 0.0, report.rtol or 0.0)
    if not all(v.passed for v in verdicts):
        stage("noise floor")
        floors = _noise_floors(target, expected, run)  # type: ignore[arg-type]
        verdicts = tolerance.judge(
            expected, outputs, names, report.atol or 0.0, report.rtol or 0.0, floors
        )
    _conclude(verdicts, expected, outputs, report)


def _noise_floors(target: Path | str, expected: list[np.ndarray], run: _Run) -> list[float]:
    """Rule 4 of :mod:`tolerance`: per output, the largest move of the reference between
    :data:`MAIN_LEVEL` and each of :data:`FLOOR_LEVELS` (``all`` reorders convolutions into a
    blocked layout, so it sums in another order; ``disabled`` leaves every fusion out)."""
    floors = [0.0] * len(expected)
    for level in FLOOR_LEVELS:
        moved = tolerance.noise_floors(expected, run.outputs(_session(target, level)))
        floors = [max(a, b) for a, b in zip(floors, moved)]
    run.report.noise_floor_levels = [MAIN_LEVEL, *FLOOR_LEVELS]
    return floors


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
    stage("consistency")
    problems = check_consistency(streamio.load(path))
    if problems:
        raise VerificationError(
            "pruned model is inconsistent: "
            + "; ".join(problems[:5])
            + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        )
    report.consistency = "passed"


def _run_pruned(path: Path, run: _Run) -> tuple[list[str], list[np.ndarray]] | None:
    """Output names and outputs of the pruned model on the verification inputs; None without a
    runtime."""
    report = run.report
    try:
        session = _session(path)
    except RuntimeUnavailableError as e:
        report.notes.append(f"ONNX Runtime checks skipped: {e}")
        logger.warning("ONNX Runtime checks skipped: %s", e)
        return None
    except Exception as e:
        raise VerificationError(f"ONNX Runtime cannot load the pruned model: {e}") from None
    run.make_feeds(session)
    names = [o.name for o in session.get_outputs()]
    try:
        outputs = run.outputs(session)
    except Exception as e:
        raise VerificationError(f"ONNX Runtime fails to run the pruned model: {e}") from None
    del session
    gc.collect()
    report.ort_run = "passed"
    return names, outputs


def _conclude(
    verdicts: Sequence[tolerance.Verdict],
    expected: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    report: VerifyReport,
) -> None:
    """Record the verdicts; warn about vacuous checks; raise on a failed output."""
    report.outputs = [v.to_dict() for v in verdicts]
    report.max_abs_diff = float(max((v.diff.max_abs_diff for v in verdicts), default=0.0))
    report.max_rel_diff = float(max((v.diff.max_rel_diff for v in verdicts), default=0.0))
    report.vacuous = [v.diff.name for v in verdicts if v.vacuous is not None]
    report.notes.extend(tolerance.notes(verdicts))
    source = str(report.inputs.get("source", "these inputs"))
    hint = "; verify on real samples: give --calibration or --eval-data DATA"
    for v in verdicts:
        if v.vacuous is not None:
            logger.warning(
                "warning: output '%s': the check against the masked reference is vacuous on %s "
                "(%s)%s",
                v.diff.name, source, v.vacuous, hint if source.startswith("random") else "",
            )  # fmt: skip
    failed = [(i, v) for i, v in enumerate(verdicts) if not v.passed]
    if not failed:
        report.masked_reference = "passed"
        return
    problems = [
        v.problem((np.shape(expected[i]) if i < len(expected) else "missing",
                   np.shape(outputs[i]) if i < len(outputs) else "missing"))
        for i, v in failed
    ]  # fmt: skip
    raise VerificationError(
        f"pruned model differs from the masked reference (atol={report.atol:g}, "
        f"rtol={report.rtol:g}, beyond {tolerance.NOISE_FACTOR:g}x the reference's noise floor "
        f"between optimisation levels {', '.join([MAIN_LEVEL, *FLOOR_LEVELS])}): " + "; ".join(problems)
        + ". This is a bug in onnxrecede; please report it with the model (or use --no-verify "
        "at your own risk)"
    )
