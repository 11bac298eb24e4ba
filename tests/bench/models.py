"""Tiny ONNX models built with onnx.helper for the bench and cost tests (no torch).

| builder            | what it is                                   | expected cost                 |
|--------------------|----------------------------------------------|-------------------------------|
| conv_model         | Conv(+bias) -> Relu, optional groups/stride  | see hand-computed tests       |
| conv_bn_model      | Conv(no bias) -> BatchNormalization          | BN mean/var not params        |
| conv_transpose     | ConvTranspose                                | N*Cin*Hin*Win*(Cout/g)*k*k    |
| gemm_model         | Gemm (transB=1) + bias                       | M*N*K                         |
| matmul_model       | batched MatMul with constant weight + Add    | batch*M*N*K                   |
| classifier_model   | Conv -> GlobalAveragePool -> Flatten -> Gemm  | 2-D [N, classes] output       |
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10  # onnxruntime 1.31 rejects the IR 14 that make_model writes by default
OPSET = 17


def _model(nodes, inputs, outputs, inits, name="m") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, name, inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def conv_model(
    cin: int = 4,
    cout: int = 8,
    k: int = 3,
    hw: int = 8,
    group: int = 1,
    stride: int = 1,
    batch: int | str = "N",
    seed: int = 0,
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    pad = k // 2
    out_hw = (hw + 2 * pad - k) // stride + 1
    nodes = [
        helper.make_node(
            "Conv",
            ["x", "w", "b"],
            ["c"],
            name="conv",
            group=group,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride, stride],
        ),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, cout, out_hw, out_hw])],
        {"w": _f32(rng, cout, cin // group, k, k), "b": _f32(rng, cout)},
    )


def conv_bn_model(cin: int = 3, cout: int = 6, hw: int = 5) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["y"], name="bn"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", cout, hw, hw])],
        {
            "w": _f32(rng, cout, cin, 1, 1),
            "s": _f32(rng, cout),
            "t": _f32(rng, cout),
            "m": _f32(rng, cout),
            "v": np.abs(_f32(rng, cout)) + 1,
        },
    )


def conv_transpose_model(
    cin: int = 4, cout: int = 6, hw: int = 5, group: int = 2
) -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["x", "w"],
            ["y"],
            name="deconv",
            group=group,
            kernel_shape=[3, 3],
            strides=[2, 2],
        )
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C", "H", "W"])],
        {"w": _f32(rng, cin, cout // group, 3, 3)},
    )


def gemm_model(m: int | str = 2, k: int = 16, n: int = 10) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        {"w": _f32(rng, n, k), "b": _f32(rng, n)},
    )


def matmul_model(batch: int = 3, m: int = 5, k: int = 7, n: int = 4) -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["h2"], name="bias"),
        helper.make_node("Mul", ["h2", "scale"], ["y"], name="scalar_mul"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, m, n])],
        {"w": _f32(rng, k, n), "b": _f32(rng, n), "scale": np.array(0.5, np.float32)},
    )


def classifier_model(
    cin: int = 3, width: int = 8, classes: int = 10, hw: int = 16, seed: int = 5
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        {
            "w1": _f32(rng, width, cin, 3, 3),
            "b1": _f32(rng, width),
            "w2": _f32(rng, classes, width),
            "b2": _f32(rng, classes),
        },
    )
