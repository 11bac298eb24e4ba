"""ONNX Runtime access: import checks, CPU sessions, seeded random inputs.

``onnxruntime`` and ``onnxruntime-gpu`` share the ``onnxruntime/`` package folder, so installing
both breaks one of them. We detect that and say how to fix it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from onnxrecede.checks import shape_dims
from onnxrecede.errors import InputError, RuntimeUnavailableError

logger = logging.getLogger(__name__)

ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-qnn",
    "onnxruntime-training",
)

ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def installed_ort_distributions() -> list[str]:
    """Names of the ONNX Runtime wheels installed in this environment."""
    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def double_install_message(found: Sequence[str]) -> str:
    names = " and ".join(found)
    return (
        f"{names} are installed together; they share the onnxruntime/ package folder and break "
        f"each other. Fix: pip uninstall -y {' '.join(found)} && "
        "pip install --force-reinstall 'onnxrecede[cpu]'  (or 'onnxrecede[gpu]' for CUDA/TensorRT)"
    )


def import_ort() -> ModuleType:
    """Import onnxruntime, or raise a clear error saying how to install it."""
    found = installed_ort_distributions()
    if len(found) > 1:
        raise RuntimeUnavailableError(double_install_message(found))
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise RuntimeUnavailableError(
            f"onnxruntime cannot be imported ({e}). Install exactly one runtime: "
            "pip install 'onnxrecede[cpu]'  or  pip install 'onnxrecede[gpu]'"
        ) from None
    return ort


def ort_available() -> bool:
    try:
        import_ort()
    except RuntimeUnavailableError:
        return False
    return True


def cpu_session(model: bytes | str, threads: int | None = None, *, low_memory: bool = False) -> Any:
    """An ORT session pinned to the CPU execution provider.

    ``low_memory``: no arena and no pre-packed weight copies, so a model with external data
    stays memory-mapped (verification; slower to run, not to be timed).
    """
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if low_memory:
        opts.enable_cpu_mem_arena = False
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def parse_shape_specs(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME:1x3x224x224`` options into a mapping."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x")) if sep and name else None
        except ValueError:
            shape = None
        if not shape:
            raise InputError(
                f"bad --shape '{spec}': expected NAME:DIMxDIMx..., e.g. input:1x3x224x224"
            )
        shapes[name] = shape_dims(name, shape)
    return shapes


def resolve_input_shape(
    name: str, dims: Sequence[Any], shapes: Mapping[str, Sequence[int]], batch: int
) -> tuple[int, ...]:
    """Concrete shape for one graph input: ``--shape`` wins, else a dynamic first dim is ``batch``."""
    if name in shapes:
        shape = tuple(int(d) for d in shapes[name])
        if len(shape) != len(dims):
            raise InputError(
                f"--shape {name}: gives {len(shape)} dims but the model input has rank {len(dims)}"
            )
        fixed = [(i, d) for i, d in enumerate(dims) if isinstance(d, int) and d > 0]
        if any(shape[i] != d for i, d in fixed):
            model_shape = "x".join(str(d) if isinstance(d, int) and d > 0 else "N" for d in dims)
            raise InputError(
                f"--shape {name}:{'x'.join(map(str, shape))} conflicts with the model input "
                f"'{name}', whose shape is {model_shape}; only its dynamic dims (N) can be bound"
            )
        return shape
    out: list[int] = []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif i == 0:
            out.append(batch)
        else:
            raise InputError(
                f"model input '{name}' has a dynamic dimension {i} ({d!r}); "
                f"bind it with --shape {name}:"
                + "x".join(str(x) if isinstance(x, int) and x > 0 else "N" for x in dims)
            )
    return tuple(out)


def check_shape_specs(
    inputs: Sequence[tuple[str, Sequence[Any]]], shapes: Mapping[str, Sequence[int]] | None
) -> None:
    """Refuse ``--shape`` bindings that name no input or contradict a static dim, before work."""
    names = [name for name, _ in inputs]
    for name, dims in (shapes or {}).items():
        shape_dims(name, dims)
        if name not in names:
            raise InputError(
                f"--shape names '{name}', which is not a model input; model inputs: "
                f"{', '.join(names)}"
            )
    for name, dims in inputs:
        if shapes and name in shapes:
            resolve_input_shape(name, dims, shapes, 1)


def random_inputs(
    session: Any,
    shapes: Mapping[str, Sequence[int]] | None = None,
    batch: int = 1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded random feeds for every input of an ORT session."""
    rng = np.random.default_rng(seed)
    wanted = []
    for inp in session.get_inputs():
        shape = resolve_input_shape(inp.name, inp.shape, shapes or {}, batch)
        dtype = ORT_DTYPES.get(inp.type)
        if dtype is None:
            raise InputError(
                f"model input '{inp.name}' has type {inp.type}, which onnxrecede cannot feed"
            )
        wanted.append((inp.name, shape, np.dtype(dtype)))
    _check_feed_memory(wanted)
    feeds: dict[str, np.ndarray] = {}
    for name, shape, dtype in wanted:
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            feeds[name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds


def _check_feed_memory(wanted: Sequence[tuple[str, tuple[int, ...], np.dtype]]) -> None:
    """Refuse random feeds larger than the free memory, before drawing them: each is drawn as
    float64 or int64 (8 bytes an element) and then cast."""
    from onnxrecede.runtime.memory import check_allocation

    total = 0
    for _, shape, dtype in wanted:
        total += math.prod(shape) * (8 + dtype.itemsize)
    shapes = ", ".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape, _ in wanted)
    check_allocation(
        total, f"random inputs of shape {shapes}", "give a smaller --shape (or --batch)"
    )


def check_tolerances(atol: float, rtol: float) -> None:
    """Raise :class:`InputError` unless both tolerances are finite and not negative."""
    for name, value in (("atol", atol), ("rtol", rtol)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(number) or number < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class OutputDiff:
    """How one candidate output differs from its reference.

    ``scale`` is max |reference| over the output's finite elements; an element fails iff
    ``|candidate - reference| > atol + rtol * scale`` (elements equal to their reference,
    NaN against NaN included, never fail; any other non-finite difference fails). When the
    shapes differ (or one side lacks the output), every element counts as failed.
    """

    name: str
    shape_mismatch: bool
    max_abs_diff: float
    scale: float
    failed: int
    size: int

    @property
    def max_rel_diff(self) -> float:
        """``max_abs_diff`` relative to the output's scale."""
        if self.max_abs_diff == 0:
            return 0.0
        return self.max_abs_diff / self.scale if self.scale > 0 else math.inf

    @property
    def passed(self) -> bool:
        return not self.shape_mismatch and self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape_mismatch": self.shape_mismatch,
            "max_abs_diff": _json_float(self.max_abs_diff),
            "scale": _json_float(self.scale),
            "max_rel_diff": _json_float(self.max_rel_diff),
            "failed": self.failed,
            "size": self.size,
        }


@dataclass(frozen=True)
class Comparison:
    """Every output of a candidate against its reference, under one tolerance rule."""

    outputs: tuple[OutputDiff, ...]
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def failed(self) -> int:
        return sum(o.failed for o in self.outputs)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs), default=0.0)

    @property
    def max_rel_diff(self) -> float:
        return max((o.max_rel_diff for o in self.outputs), default=0.0)

    def failures(self) -> list[OutputDiff]:
        return [o for o in self.outputs if not o.passed]


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


def compare_outputs(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    atol: float,
    rtol: float,
    names: Sequence[str] | None = None,
) -> Comparison:
    """Compare outputs pairwise: an element fails iff abs diff > atol + rtol * scale, where
    scale is max |reference| of that output (see :class:`OutputDiff`)."""
    check_tolerances(atol, rtol)
    diffs = []
    for i in range(max(len(reference), len(candidate))):
        name = names[i] if names is not None and i < len(names) else f"output {i}"
        ref = np.asarray(reference[i]) if i < len(reference) else None
        cand = np.asarray(candidate[i]) if i < len(candidate) else None
        diffs.append(_compare_one(name, ref, cand, float(atol), float(rtol)))
    return Comparison(tuple(diffs), float(atol), float(rtol))


def _compare_one(
    name: str, ref: np.ndarray | None, cand: np.ndarray | None, atol: float, rtol: float
) -> OutputDiff:
    if ref is None or cand is None or ref.shape != cand.shape:
        size = max(a.size for a in (ref, cand) if a is not None)
        return OutputDiff(name, True, math.inf, math.nan, size, size)
    ref64 = ref.astype(np.float64)
    cand64 = cand.astype(np.float64)
    finite = np.abs(ref64[np.isfinite(ref64)])
    scale = float(finite.max()) if finite.size else 0.0
    same = (ref64 == cand64) | (np.isnan(ref64) & np.isnan(cand64))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(ref64 - cand64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # inf - inf, or NaN against a number
    failed = int(np.count_nonzero(diff > atol + rtol * scale))
    return OutputDiff(name, False, float(diff.max()) if diff.size else 0.0, scale, failed, ref.size)


# Provider-aware sessions ---------------------------------------------------------------------

#: Short provider names accepted on the command line.
PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
#: What each provider falls back to when one of its nodes is unsupported.
_FALLBACKS: dict[str, tuple[str, ...]] = {
    "CPUExecutionProvider": (),
    "CUDAExecutionProvider": ("CPUExecutionProvider",),
    "TensorrtExecutionProvider": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}


class ProviderUnavailableError(RuntimeUnavailableError):
    """A requested execution provider cannot run a session here; ``reason`` says why."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"{provider_display_name(provider)} EP unavailable: {reason}")


def provider_display_name(provider: str) -> str:
    """``CPU``, ``CUDA`` or ``TensorRT`` for an ORT provider name."""
    return {
        "CPUExecutionProvider": "CPU",
        "CUDAExecutionProvider": "CUDA",
        "TensorrtExecutionProvider": "TensorRT",
    }.get(provider, provider)


def provider_full_name(name: str) -> str:
    """``cpu`` / ``cuda`` / ``tensorrt`` (or a full ORT provider name) to the ORT name."""
    full = PROVIDER_NAMES.get(name.strip().lower(), name.strip())
    if full not in _FALLBACKS:
        raise InputError(f"unknown execution provider '{name}'; choose from cpu, cuda, tensorrt")
    return full


def provider_session(
    model: bytes | str,
    provider: str,
    *,
    threads: int | None = None,
    provider_options: Mapping[str, Any] | None = None,
    config: Mapping[str, str] | None = None,
) -> Any:
    """An ORT session that really runs on ``provider``, or :class:`ProviderUnavailableError`.

    ``get_available_providers()`` lists CUDA/TensorRT even where their libraries cannot load, and
    a session then silently falls back to the CPU; the truth is ``session.get_providers()[0]``.
    The reason of a failed load is taken from what ONNX Runtime writes to stderr.
    """
    ort = import_ort()
    provider = provider_full_name(provider)
    if provider not in ort.get_available_providers():
        raise ProviderUnavailableError(
            provider,
            "not in this onnxruntime build (installed: "
            f"{', '.join(installed_ort_distributions()) or 'unknown'}); for CUDA/TensorRT "
            "install onnxruntime-gpu instead: pip uninstall -y onnxruntime && "
            "pip install 'onnxrecede[gpu]'",
        )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    providers: list[Any] = [(provider, dict(provider_options or {}))]
    providers.extend(_FALLBACKS[provider])
    with _native_stderr_captured() as captured:
        try:
            session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        except Exception as e:  # ORT raises its own Fail/InvalidArgument/... types
            if provider == "CPUExecutionProvider":
                raise InputError(f"onnxruntime cannot load the model: {e}") from None
            raise ProviderUnavailableError(provider, _first_line(str(e))) from None
    if session.get_providers()[0] != provider:
        reason = _load_failure(captured.text) or (
            f"the session fell back to {session.get_providers()[0]} "
            "(driver, GPU or CUDA/cuDNN/TensorRT libraries missing)"
        )
        raise ProviderUnavailableError(provider, reason)
    return session


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "unknown error")[:300]


def _load_failure(text: str) -> str | None:
    """The most telling line of what ORT logged while failing to load a provider."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower() or "fail" in ln.lower() or "cannot" in ln.lower():
            # drop ORT's "2024-01-01 ... [E:onnxruntime:Default, file.cc:123 Func]" prefix
            return ln.rsplit("] ", 1)[-1][:300]
    return lines[-1][:300] if lines else None


class _Captured:
    text = ""


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[_Captured]:
    """Capture what native code writes to file descriptor 2 (ORT logs there, not to Python)."""
    captured = _Captured()
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters)
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        sys.stderr.flush()
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.text = tmp.read().decode("utf-8", "replace")
    if captured.text.strip():
        logger.debug("onnxruntime said: %s", captured.text.strip())
