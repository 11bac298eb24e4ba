"""Small hand-built ONNX models for the data, probe and cut-quality tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10


def small_cnn(seed: int = 0, batch: int | str = "N", hw: int = 8) -> onnx.ModelProto:
    """input [N,3,hw,hw] -> Conv conv_a (3->8) -> Relu -> Conv conv_b (8->6) -> Relu
    -> GlobalAveragePool -> Flatten -> Gemm fc (->10) -> logits."""
    rng = np.random.default_rng(seed)

    def init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    inits = [
        init("conv_a.weight", (8, 3, 3, 3)),
        init("conv_a.bias", (8,)),
        init("conv_b.weight", (6, 8, 3, 3)),
        init("conv_b.bias", (6,)),
        init("fc.weight", (10, 6)),
        init("fc.bias", (10,)),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_a.weight", "conv_a.bias"], ["a"], name="conv_a",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_a"),
        helper.make_node("Conv", ["a_relu", "conv_b.weight", "conv_b.bias"], ["b"], name="conv_b",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b"], ["b_relu"], name="relu_b"),
        helper.make_node("GlobalAveragePool", ["b_relu"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
