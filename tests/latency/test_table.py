"""``onnxrecede latency``: the table's content, its cache, and a missing provider."""

from __future__ import annotations

import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

from onnxrecede.latency.cache import LatencyCache
from onnxrecede.latency.measure import Device, Timing
from onnxrecede.latency.table import build_table, load_table
from onnxrecede.latency.units import grid_points
from onnxrecede.runtime.session import ort_available

SAMPLE = "samples/resnet_small.onnx"
FAST = Timing(warmup=1, seconds=0.001)


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_grid_points_are_the_tops_of_steps_of_eight():
    assert grid_points(64, 32) == [4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert grid_points(2048, 32)[:3] == [64, 128, 192] and grid_points(2048, 32)[-1] == 2048
    assert len(grid_points(2048, 32)) <= 32
    assert grid_points(5, 32) == [1, 2, 5]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    cache_path = tmp_path_factory.mktemp("cache") / "cache.json"
    cache = LatencyCache(cache_path)
    table = build_table(SAMPLE, Device.parse("cpu", 1), max_points=4, cache=cache, timing=FAST)
    return table, cache_path


def test_table_lists_units_curves_and_machine(first):
    table, _ = first
    m = table["machine"]
    assert m["provider"] == "cpu" and m["threads"] == 1 and m["onnxruntime_version"]
    assert m["device"] and m["cpu_count"] >= 1
    assert table["input_shapes"] == {"input": [1, 3, 32, 32]}
    units = {u["node"]: u for u in table["units"]}
    proto = onnx.load(SAMPLE)
    convs = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    assert sorted(units) == sorted(convs)
    stem = units[proto.graph.node[0].name]
    assert stem["in"] is None  # the image's 3 channels are not a prunable axis
    assert [k for k, _ in stem["out"]["curve"]] == grid_points(16, 4)
    assert stem["out"]["curve"][-1][1] == stem["full_ms"]
    assert table["units_ms"] == pytest.approx(sum(u["full_ms"] for u in units.values()))
    assert table["model_ms"] > 0
    assert {g["size"] for g in table["groups"]} >= {16, 32, 64}
    assert table["branches"]  # the residual blocks, each with its layers' summed latency
    for branch in table["branches"]:
        assert branch["units"] and set(branch["units"]) <= set(units)
        assert branch["ms"] == pytest.approx(sum(units[n]["full_ms"] for n in branch["units"]))


def test_second_build_and_a_renamed_model_measure_nothing(first, tmp_path):
    table, cache_path = first
    assert table["cache"]["measured"] > 0
    again = build_table(SAMPLE, Device.parse("cpu", 1), max_points=4,
                        cache=LatencyCache(cache_path), timing=FAST)  # fmt: skip
    assert again["cache"]["measured"] == 0
    assert again["units"] == table["units"]
    proto = onnx.load(SAMPLE)
    for i, node in enumerate(proto.graph.node):
        node.name = f"other_{i}"
    other = tmp_path / "other.onnx"
    onnx.save(proto, other)
    renamed = build_table(other, Device.parse("cpu", 1), max_points=4,
                          cache=LatencyCache(cache_path), timing=FAST)  # fmt: skip
    assert renamed["cache"]["measured"] == 0 and renamed["cache"]["hits"] > 0
    assert renamed["model_fingerprint"] != table["model_fingerprint"]
    fresh = build_table(SAMPLE, Device.parse("cpu", 2), max_points=4,
                        cache=LatencyCache(cache_path), timing=FAST)  # fmt: skip
    # another thread count is another machine: measured again (hits only within the model)
    assert fresh["cache"] == table["cache"]


def test_cli_writes_a_table_prune_can_read(tmp_path):
    out = tmp_path / "t.json"
    r = _run(["latency", SAMPLE, "-o", out, "--threads", "1", "--max-points", "2",
              "--seconds", "0.001", "--cache", tmp_path / "c.json", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "prunable groups" in r.output
    doc = load_table(out)
    assert doc["max_points"] == 2 and (tmp_path / "c.json").is_file()


@pytest.mark.skipif(not ort_available(), reason="needs onnxruntime")
@pytest.mark.parametrize("provider, name", [("cuda", "CUDA"), ("tensorrt", "TensorRT")])
def test_missing_gpu_provider_is_one_error_line_exit_3(tmp_path, provider, name):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("a CUDA build of onnxruntime is installed")
    out = tmp_path / "t.json"
    r = _run(["latency", SAMPLE, "-o", out, "--providers", provider, "--no-cache"])
    assert r.exit_code == 3
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and name in errors[0] and "Traceback" not in r.output
    assert not out.exists()
