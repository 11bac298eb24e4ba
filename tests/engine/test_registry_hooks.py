"""What the registry tells the rest of the package: importances keys (weight input, output
channel count) and which producers reports list."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from onnxrecede.api import REPORTED_PRODUCERS
from onnxrecede.engine import registry
from onnxrecede.importance.file_format import CHANNEL_OPS, channel_count


def _node(op: str, weight_shape: tuple[int, ...], **attrs: int) -> ir.Node:
    w = numpy_helper.from_array(np.zeros(weight_shape, np.float32), "w")
    node = helper.make_node(op, ["x", "w"], ["y"], name="n", **attrs)
    graph = helper.make_graph([node], "g", [], [], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    return next(iter(ir.serde.deserialize_model(model).graph))


@pytest.mark.parametrize(
    ("op", "shape", "attrs", "channels"),
    [
        ("Conv", (6, 3, 3, 3), {}, 6),
        ("ConvTranspose", (3, 4, 2, 2), {"group": 3}, 12),
        ("Gemm", (8, 5), {}, 5),
        ("Gemm", (8, 5), {"transB": 1}, 8),
        ("MatMul", (8, 5), {}, 5),
        ("BatchNormalization", (7,), {}, 7),
        ("InstanceNormalization", (7,), {}, 7),
        ("Relu", (7,), {}, None),
    ],
)
def test_output_channels(op, shape, attrs, channels):
    assert channel_count(_node(op, shape, **attrs)) == channels


def test_channel_ops_and_reported_producers():
    assert CHANNEL_OPS == registry.weight_inputs() == {
        "Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1,
        "BatchNormalization": 1, "InstanceNormalization": 1,
    }  # fmt: skip
    assert set(REPORTED_PRODUCERS) == {"Conv", "ConvTranspose", "Gemm", "MatMul"}
