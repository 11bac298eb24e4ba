"""The benchmark driver on the CPU: JSON schema, agreement, costs, providers. No timing asserted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx
import pytest

from onnxrecede.bench import BenchOptions, benchmark, compare, format_comparison, model_file_size
from onnxrecede.engine.cost import count_cost
from onnxrecede.errors import InputError, RuntimeUnavailableError
from onnxrecede.runtime.session import ProviderUnavailableError
from tests.bench import models

FAST = {"runs": 3, "warmup": 1, "bootstrap": 50}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_model_against_itself_agrees_exactly(classifier_paths: tuple[Path, Path]) -> None:
    ref, _ = classifier_paths
    result = compare(ref, ref, BenchOptions(batches=(1, 4), **FAST))
    assert result.max_abs_diff == 0.0
    for config in result.configurations:
        agreement = config.comparisons[0].agreement
        assert agreement.max_abs_diff == 0.0 and agreement.max_rel_diff == 0.0
        assert agreement.top1_agreement == 1.0
    assert [c.batch for c in result.configurations] == [1, 4]
    assert result.configurations[1].input_shapes == {"x": (4, 3, 16, 16)}


def test_perturbed_model_differs(classifier_paths: tuple[Path, Path]) -> None:
    ref, perturbed = classifier_paths
    before = _digest(ref), _digest(perturbed)
    result = compare(ref, perturbed, BenchOptions(**FAST))
    assert result.max_abs_diff is not None and result.max_abs_diff > 1e-3
    assert (_digest(ref), _digest(perturbed)) == before  # inputs are never modified


def test_json_schema(classifier_paths: tuple[Path, Path], narrow_path: Path) -> None:
    ref, _ = classifier_paths
    result = compare(ref, narrow_path, BenchOptions(threads=1, **FAST))
    d = json.loads(json.dumps(result.to_dict()))  # strict JSON round trip
    assert d["schema"] == "onnxrecede-bench/1"
    assert isinstance(d["speedup"], float) and d["speedup"] > 0
    assert isinstance(d["max_abs_diff"], float)
    assert len(d["speedup_ci"]) == 2
    assert d["environment"]["intra_op_threads"] == 1
    assert d["environment"]["onnxruntime_version"]
    assert d["primary"] == {"provider": "cpu", "batch": 1}
    assert [m["role"] for m in d["models"]] == ["reference", "candidate"]
    assert d["models"][0]["macs"] == count_cost(ref).macs
    assert d["models"][1]["params"] == count_cost(narrow_path).params
    assert d["ideal_speedup"] == pytest.approx(count_cost(ref).macs / count_cost(narrow_path).macs)
    (config,) = d["results"]
    assert config["provider"] == "cpu" and config["batch"] == 1
    for model in config["models"]:
        assert model["latency"]["runs"] == 3
        for key in ("median_ms", "p90_ms", "mean_ms", "throughput_per_s"):
            assert isinstance(model["latency"][key], float) and model["latency"][key] > 0
        assert isinstance(model["session_create_s"], float)
    (comparison,) = config["comparisons"]
    assert comparison["ci_low"] <= comparison["speedup"] <= comparison["ci_high"]
    assert comparison["agreement"]["outputs"][0]["name"] == "logits"
    assert d["unavailable_providers"] == []


def test_single_model_has_no_speedup(classifier_paths: tuple[Path, Path]) -> None:
    result = benchmark([classifier_paths[0]], BenchOptions(**FAST))
    assert result.speedup is None and result.to_dict()["speedup"] is None
    assert "reference" in format_comparison(result)


def test_unavailable_provider_is_recorded_and_the_rest_runs(
    classifier_paths: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxrecede.bench.driver as driver

    real = driver.provider_session

    def fake(model, provider, **kwargs):  # type: ignore[no-untyped-def]
        if provider == "CUDAExecutionProvider":
            raise ProviderUnavailableError(provider, "libcudart.so.12: cannot open shared object")
        return real(model, provider, **kwargs)

    monkeypatch.setattr(driver, "provider_session", fake)
    ref, cand = classifier_paths
    result = compare(ref, cand, BenchOptions(providers=("cuda", "cpu"), **FAST))
    assert [c.provider for c in result.configurations] == ["cpu"]
    assert result.to_dict()["unavailable_providers"] == [
        {"provider": "cuda", "reason": "libcudart.so.12: cannot open shared object"}
    ]
    assert "CUDA EP unavailable: libcudart.so.12" in format_comparison(result)
    with pytest.raises(RuntimeUnavailableError, match="no requested execution provider"):
        compare(ref, cand, BenchOptions(providers=("cuda",), **FAST))


def test_dynamic_spatial_dims_need_shape(tmp_path: Path) -> None:
    proto = models.conv_model()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    proto.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "H"
    proto.graph.output[0].type.tensor_type.shape.dim[3].dim_param = "W"
    path = tmp_path / "dyn.onnx"
    onnx.save(proto, path)
    with pytest.raises(InputError, match=r"--shape x:Nx4xNxN"):
        benchmark([path], BenchOptions(**FAST))
    result = benchmark([path], BenchOptions(shapes={"x": (2, 4, 8, 8)}, **FAST))
    assert result.configurations[0].input_shapes == {"x": (2, 4, 8, 8)}
    assert result.models[0].cost is not None and result.models[0].cost.macs == 2 * 18432


def test_inputs_must_match(classifier_paths: tuple[Path, Path], tmp_path: Path) -> None:
    path = tmp_path / "gemm.onnx"
    onnx.save(models.gemm_model(), path)
    with pytest.raises(InputError, match="differ from the reference"):
        compare(classifier_paths[0], path, BenchOptions(**FAST))
    with pytest.raises(InputError, match="not a model input"):
        benchmark([path], BenchOptions(shapes={"y": (1, 2)}, **FAST))


def test_bad_options_fail_early() -> None:
    with pytest.raises(InputError, match="either --runs or --seconds"):
        BenchOptions(runs=3, seconds=1.0)
    with pytest.raises(InputError, match="unknown execution provider"):
        BenchOptions(providers=("tpu",))


def test_file_size_counts_external_data(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save(models.conv_model(cin=16, cout=16), path, save_as_external_data=True,
              location="ext.onnx.data", size_threshold=0)  # fmt: skip
    data = tmp_path / "ext.onnx.data"
    assert model_file_size(path) == path.stat().st_size + data.stat().st_size
