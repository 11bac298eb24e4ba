"""Cost counts against hand-computed values (see the convention in onnxrecede/cost.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxrecede.engine.cost import Cost, count_cost
from onnxrecede.errors import InputError
from tests.bench import models


@pytest.mark.parametrize(
    ("kwargs", "macs", "params"),
    [
        # N*Cout*Hout*Wout*(Cin/g)*kH*kW ; params = Cout*(Cin/g)*k*k + Cout
        ({}, 1 * 8 * 8 * 8 * 4 * 3 * 3, 8 * 4 * 9 + 8),
        ({"group": 2, "stride": 2}, 1 * 8 * 4 * 4 * 2 * 3 * 3, 8 * 2 * 9 + 8),
        ({"cin": 8, "cout": 8, "group": 8}, 1 * 8 * 8 * 8 * 1 * 3 * 3, 8 * 1 * 9 + 8),  # depthwise
        ({"k": 1, "cin": 16, "cout": 32, "hw": 7}, 32 * 7 * 7 * 16, 32 * 16 + 32),
    ],
)
def test_conv(kwargs: dict[str, int], macs: int, params: int) -> None:
    cost = count_cost(models.conv_model(**kwargs))
    assert (cost.macs, cost.params, cost.flops) == (macs, params, 2 * macs)
    assert cost.unresolved == ()


def test_dynamic_batch_counts_one_unless_bound() -> None:
    model = models.conv_model()
    assert count_cost(model, {"x": (4, 4, 8, 8)}).macs == 4 * count_cost(model).macs
    assert count_cost(models.conv_model(batch=3)).macs == 3 * count_cost(model).macs


def test_batchnorm_running_stats_are_not_params() -> None:
    cost = count_cost(models.conv_bn_model(cin=3, cout=6, hw=5))
    assert cost.macs == 6 * 5 * 5 * 3
    assert cost.params == 6 * 3 + 6 + 6  # conv weight, BN scale and shift


def test_conv_transpose() -> None:
    cost = count_cost(models.conv_transpose_model(cin=4, cout=6, hw=5, group=2))
    # N*Cin*Hin*Win*(Cout/g)*kH*kW
    assert cost.macs == 1 * 4 * 5 * 5 * 3 * 3 * 3
    assert cost.params == 4 * 3 * 3 * 3


def test_gemm() -> None:
    cost = count_cost(models.gemm_model(m=2, k=16, n=10))
    assert (cost.macs, cost.params) == (2 * 10 * 16, 10 * 16 + 10)
    assert count_cost(models.gemm_model(m="N", k=16, n=10)).macs == 10 * 16


def test_matmul_batched_with_bias_and_scalar_scale() -> None:
    cost = count_cost(models.matmul_model(batch=3, m=5, k=7, n=4))
    assert cost.macs == 3 * 5 * 4 * 7
    assert cost.params == 7 * 4 + 4  # the scalar Mul constant is not a parameter
    by_name = {n.name: n for n in cost.per_node}
    assert (by_name["mm"].macs, by_name["mm"].params) == (3 * 5 * 4 * 7, 28)
    assert by_name["scalar_mul"].params == 0


def test_classifier_total_and_dict() -> None:
    cost = count_cost(models.classifier_model(cin=3, width=8, classes=10, hw=16))
    assert cost.macs == 8 * 16 * 16 * 3 * 9 + 10 * 8
    assert cost.params == 8 * 27 + 8 + 10 * 8 + 10
    d = cost.to_dict()
    assert d["macs"] == cost.macs and d["flops"] == 2 * cost.macs and d["params"] == cost.params
    assert {n["name"] for n in d["per_node"]} == {"conv1", "fc"}


def test_shared_weight_counted_once_and_prelu_traced_through_sigmoid() -> None:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    theta = numpy_helper.from_array(np.zeros((4,), np.float32), "theta")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm1"),
        helper.make_node("MatMul", ["h", "w"], ["h2"], name="mm2"),
        helper.make_node("Sigmoid", ["theta"], ["slope"], name="sig"),
        helper.make_node("PRelu", ["h2", "slope"], ["y"], name="prelu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [w, theta],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    cost = count_cost(model)
    assert cost.params == 16 + 4
    assert cost.macs == 2 * (2 * 4 * 4)


def test_ir_model_is_not_modified_and_stale_shapes_are_ignored() -> None:
    proto = models.conv_model(cin=4, cout=8)
    # A stale intermediate shape (as left by a careless rewrite) must not break the count.
    proto.graph.value_info.append(
        helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 99, 8, 8])
    )
    model = ir.serde.deserialize_model(proto)
    before = ir.serde.serialize_model(model).SerializeToString()
    cost = count_cost(model, {"x": (2, 4, 8, 8)})
    assert cost.macs == 2 * 8 * 8 * 8 * 4 * 9
    assert ir.serde.serialize_model(model).SerializeToString() == before


def test_path_with_external_data(tmp_path) -> None:
    proto = models.conv_model(cin=16, cout=32)
    path = tmp_path / "m.onnx"
    onnx.save(
        proto,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.onnx.data",
        size_threshold=0,
    )
    before = path.read_bytes(), (tmp_path / "m.onnx.data").read_bytes()
    cost = count_cost(path)
    assert cost == count_cost(proto)
    assert cost.params == 32 * 16 * 9 + 32
    assert (path.read_bytes(), (tmp_path / "m.onnx.data").read_bytes()) == before


def test_unbound_dynamic_spatial_dims_are_reported() -> None:
    proto = models.conv_model()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    cost = count_cost(proto)
    assert cost.macs == 0 and cost.unresolved == ("conv",)
    assert count_cost(proto, {"x": (1, 4, 8, 8)}).macs == 18432


def test_bad_input_shapes_are_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="not a model input"):
        count_cost(models.conv_model(), {"nope": (1, 2)})
    with pytest.raises(InputError, match="rank"):
        count_cost(models.conv_model(), {"x": (1, 4)})
    with pytest.raises(InputError, match="not found"):
        count_cost(tmp_path / "missing.onnx")


def test_cost_is_frozen() -> None:
    cost = Cost(macs=1, params=2)
    with pytest.raises(AttributeError):
        cost.macs = 3  # type: ignore[misc]
