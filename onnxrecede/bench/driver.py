"""Benchmark driver: sessions per provider, feeds per batch, interleaved timing, agreement."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxrecede.bench import inputs as feeds_mod
from onnxrecede.bench.agreement import compare_models_outputs
from onnxrecede.bench.cuda_graph import CUDA_GRAPH_OPTION, CudaGraphRunner, host_outputs
from onnxrecede.bench.options import BenchOptions
from onnxrecede.bench.result import (
    BenchResult,
    Comparison,
    Configuration,
    ModelInfo,
    Unavailable,
)
from onnxrecede.bench.stats import LatencyStats, speedup_interval
from onnxrecede.bench.timing import DeviceRunner, HostRunner, Progress, Runner, measure_interleaved
from onnxrecede.engine.cost import count_cost
from onnxrecede.errors import InputError, RuntimeUnavailableError
from onnxrecede.runtime.session import ProviderUnavailableError, import_ort, provider_session

logger = logging.getLogger(__name__)

_SHORT = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
}


def compare(
    reference_path: str | os.PathLike[str],
    candidate_path: str | os.PathLike[str],
    options: BenchOptions | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Time ``candidate_path`` against ``reference_path``; see :func:`benchmark`."""
    return benchmark([reference_path, candidate_path], options, progress)


def benchmark(
    paths: Sequence[str | os.PathLike[str]],
    options: BenchOptions | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Latency, cost and output agreement of one or more models; the first is the reference.

    For each requested provider that really runs, and each batch size, all models are timed
    interleaved (A B A B ...). A provider that cannot run is recorded with its reason.
    """
    options = options or BenchOptions()
    model_paths = [_checked_path(p) for p in paths]
    if not model_paths:
        raise InputError("give at least one model to benchmark")
    configurations: list[Configuration] = []
    unavailable: list[Unavailable] = []
    cost_shapes: dict[str, tuple[int, ...]] | None = None
    _warm_ort_environment()
    for provider in options.providers:
        try:
            sessions, create_s = _open_sessions(model_paths, provider, options)
        except ProviderUnavailableError as e:
            if options.cuda_graph:
                raise  # nothing else was asked for: one error line naming CUDA, exit 3
            logger.warning("%s", e)
            unavailable.append(Unavailable(_SHORT.get(provider, provider), e.reason))
            continue
        for path, session in zip(model_paths[1:], sessions[1:], strict=True):
            feeds_mod.check_same_inputs(sessions[0], session, path)
        feeds_mod.check_shape_names(sessions[0], options.shapes)
        for batch, feeds in _feeds_per_batch(sessions[0], options):
            if cost_shapes is None:
                cost_shapes = _per_sample_shapes(sessions[0], options, feeds)
            configurations.append(
                _measure(model_paths, sessions, create_s, provider, batch, feeds, options, progress)
            )
        del sessions
    if not configurations:
        raise RuntimeUnavailableError(
            "no requested execution provider can run here: "
            + "; ".join(f"{u.provider}: {u.reason}" for u in unavailable)
        )
    models = tuple(_model_info(p, cost_shapes or {}) for p in model_paths)
    return BenchResult(
        models=models,
        configurations=tuple(configurations),
        unavailable=tuple(unavailable),
        environment=environment(options),
        options=_options_dict(options),
    )


def _checked_path(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    if not os.path.isfile(text):
        raise InputError(f"model file not found: {text}")
    return text


def _open_sessions(
    paths: Sequence[str], provider: str, options: BenchOptions
) -> tuple[list[Any], tuple[float, ...]]:
    sessions, seconds = [], []
    for path in paths:
        start = time.perf_counter()
        sessions.append(
            provider_session(
                path,
                provider,
                threads=options.threads,
                provider_options=_provider_options(provider, options),
                config=_session_config(options),
            )
        )
        seconds.append(time.perf_counter() - start)
        logger.info("%s: session on %s created in %.3f s", path, _SHORT[provider], seconds[-1])
    return sessions, tuple(seconds)


def _provider_options(provider: str, options: BenchOptions) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":
        cache = Path(options.trt_cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        return {
            "device_id": "0",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(cache),
        }
    if provider == "CUDAExecutionProvider":
        cuda = {"device_id": "0", "cudnn_conv_algo_search": options.cudnn_conv_algo_search}
        if options.cuda_graph:
            cuda[CUDA_GRAPH_OPTION] = "1"
        return cuda
    return {}


def _session_config(options: BenchOptions) -> dict[str, str]:
    if options.spin:
        return {}
    # Interleaved sessions each own a thread pool; spinning workers of one would steal the
    # cores of the next, so spinning is off unless asked for.
    return {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def _feeds_per_batch(
    session: Any, options: BenchOptions
) -> list[tuple[int, dict[str, np.ndarray]]]:
    if options.inputs is not None:
        feeds = feeds_mod.load_npz_feeds(options.inputs, session)
        return [(feeds_mod.batch_of(feeds), feeds)]
    return [
        (batch, feeds_mod.seeded_feeds(session, options.shapes, batch, options.seed))
        for batch in options.batches
    ]


def _per_sample_shapes(
    session: Any, options: BenchOptions, feeds: Mapping[str, np.ndarray]
) -> dict[str, tuple[int, ...]]:
    """Input shapes for the cost count: batch 1 unless ``--shape``/``--inputs`` fix it."""
    if options.inputs is not None:
        return {name: tuple(int(d) for d in a.shape) for name, a in feeds.items()}
    return feeds_mod.feed_shapes(session, options.shapes, 1)


def _runner(
    path: str,
    session: Any,
    feeds: Mapping[str, np.ndarray],
    provider: str,
    options: BenchOptions,
) -> Runner:
    if options.cuda_graph:
        return CudaGraphRunner(session, feeds, host_outputs(path, feeds))
    if provider == "CPUExecutionProvider" or options.include_copies:
        return HostRunner(session, feeds)
    return DeviceRunner(session, feeds, "cuda", 0)


def _measure(
    paths: Sequence[str],
    sessions: Sequence[Any],
    create_s: tuple[float, ...],
    provider: str,
    batch: int,
    feeds: Mapping[str, np.ndarray],
    options: BenchOptions,
    progress: Progress | None,
) -> Configuration:
    short = _SHORT[provider]
    runners = [
        _runner(p, s, feeds, provider, options) for p, s in zip(paths, sessions, strict=True)
    ]
    outputs = [_first_outputs(path, runner) for path, runner in zip(paths, runners, strict=True)]
    samples = measure_interleaved(
        runners,
        warmup=options.warmup,
        runs=options.runs,
        seconds=options.time_budget,
        progress=progress,
        stage=f"{short} batch {batch}",
    )
    names = [o.name for o in sessions[0].get_outputs()]
    comparisons = tuple(
        Comparison(
            candidate=i,
            speedup=speedup_interval(
                samples[0],
                samples[i],
                resamples=options.bootstrap,
                confidence=options.confidence,
                seed=options.seed,
            ),
            agreement=compare_models_outputs(
                outputs[0],
                outputs[i],
                names,
                [o.name for o in sessions[i].get_outputs()],
                atol=options.atol,
                rtol=options.rtol,
            ),
        )
        for i in range(1, len(sessions))
    )
    return Configuration(
        provider=short,
        batch=batch,
        input_shapes={n: tuple(int(d) for d in a.shape) for n, a in feeds.items()},
        input_dtypes={n: str(a.dtype) for n, a in feeds.items()},
        copies_timed=provider == "CPUExecutionProvider" or options.include_copies,
        session_create_s=create_s,
        latency=tuple(LatencyStats.from_samples(s, batch) for s in samples),
        comparisons=comparisons,
    )


def _first_outputs(path: str, runner: Runner) -> list[np.ndarray]:
    try:
        return runner.outputs()
    except Exception as e:  # ORT's own exception types; the model is at fault
        raise InputError(f"{path}: onnxruntime failed to run the model: {e}") from None


def _model_info(path: str, shapes: dict[str, tuple[int, ...]]) -> ModelInfo:
    try:
        cost, error = count_cost(path, shapes), None
    except InputError as e:
        cost, error = None, str(e)
        logger.warning("%s: cost not counted: %s", path, e)
    return ModelInfo(path, model_file_size(path), cost, shapes, error)


def model_file_size(path: str | os.PathLike[str]) -> int:
    """Bytes of the model file plus the external-data files it refers to."""
    size = os.path.getsize(path)
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # size of a file that onnx cannot parse is still its size
        return size
    folder = Path(path).parent
    locations = {
        entry.value
        for tensor in _all_tensors(proto.graph)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for location in locations:
        data = folder / location
        if data.is_file():
            size += data.stat().st_size
    return size


def _all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                tensors.extend(_all_tensors(sub))
    return tensors


def environment(options: BenchOptions) -> dict[str, Any]:
    """Where the numbers were measured: versions, machine, threads."""

    ort = import_ort()
    return {
        "onnxruntime_version": ort.__version__,
        "onnxrecede_version": _package_version(),
        "onnx_version": onnx.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "intra_op_threads": options.threads,
        "intra_op_threads_note": (
            "onnxruntime default (one per physical core)" if options.threads is None else "pinned"
        ),
        "spinning": options.spin,
        "available_providers": list(ort.get_available_providers()),
        **_gpu_environment(options),
    }


def _gpu_environment(options: BenchOptions) -> dict[str, Any]:
    """The GPU and the CUDA settings, when a GPU provider was asked for."""
    if all(p == "CPUExecutionProvider" for p in options.providers):
        return {}
    return {
        "gpu": gpu_name(),
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "cuda_graph": options.cuda_graph,
    }


def gpu_name() -> str:
    """GPU 0's name as nvidia-smi reports it."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return "GPU 0 (name unknown: nvidia-smi missing)"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or sys.platform


def _options_dict(options: BenchOptions) -> dict[str, Any]:
    return {
        "providers": [_SHORT.get(p, p) for p in options.providers],
        "batches": list(options.batches),
        "shapes": {k: list(v) for k, v in options.shapes.items()},
        "threads": options.threads,
        "warmup": options.warmup,
        "runs": options.runs,
        "seconds": options.time_budget,
        "inputs": os.fspath(options.inputs) if options.inputs else None,
        "include_copies": options.include_copies,
        "cuda_graph": options.cuda_graph,
        "cudnn_conv_algo_search": options.cudnn_conv_algo_search,
        "seed": options.seed,
        "atol": options.atol,
        "rtol": options.rtol,
        "bootstrap_resamples": options.bootstrap,
        "confidence": options.confidence,
    }


_ORT_WARM = False


def _warm_ort_environment() -> None:
    """Create one trivial session so that ORT's one-time set-up is not billed to the reference."""
    global _ORT_WARM
    if _ORT_WARM:
        return
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "warm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    provider_session(model.SerializeToString(), "CPUExecutionProvider")
    _ORT_WARM = True


def _package_version() -> str:
    """The installed onnxrecede version (read from the package metadata: no import of the
    top-level package, which imports the API, which imports bench)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("onnxrecede")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
