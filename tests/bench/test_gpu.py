"""GPU paths: run only where a CUDA / TensorRT execution provider really loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxrecede.bench import BenchOptions, compare
from onnxrecede.runtime.session import ProviderUnavailableError, provider_session


def _skip_unless(provider: str, model: Path) -> None:
    try:
        provider_session(str(model), provider)
    except ProviderUnavailableError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("include_copies", [False, True])
def test_cuda_comparison(classifier_paths: tuple[Path, Path], include_copies: bool) -> None:
    ref, cand = classifier_paths
    _skip_unless("cuda", ref)
    options = BenchOptions(providers=("cuda",), runs=5, warmup=2, include_copies=include_copies)
    result = compare(ref, cand, options)
    (config,) = result.configurations
    assert config.provider == "cuda" and config.copies_timed == include_copies
    assert result.max_abs_diff is not None and result.max_abs_diff > 0
    same = compare(ref, ref, options)
    assert same.max_abs_diff == 0.0


def test_tensorrt_comparison_with_engine_cache(
    classifier_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    ref, _ = classifier_paths
    _skip_unless("tensorrt", ref)
    options = BenchOptions(providers=("tensorrt",), runs=5, warmup=2, trt_cache_dir=tmp_path)
    result = compare(ref, ref, options)
    assert result.configurations[0].provider == "tensorrt"
    assert any(tmp_path.iterdir())  # the engine cache was written


def test_cuda_graph_replays_and_names_the_setup(classifier_paths: tuple[Path, Path]) -> None:
    ref, cand = classifier_paths
    _skip_unless("cuda", ref)
    options = BenchOptions(providers=("cuda",), runs=5, warmup=2, cuda_graph=True)
    result = compare(ref, cand, options)
    env = result.environment
    assert env["cuda_graph"] is True and env["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert env["gpu"] and result.configurations[0].input_dtypes
    same = compare(ref, ref, options)
    assert same.max_abs_diff == 0.0  # replayed graphs compute the model's outputs
