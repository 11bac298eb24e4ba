"""A model built by hand the way paddle2onnx exports: every weight in a ``Constant`` node,
a legacy ``-1`` batch dim on the input and output.

Also the other ways a weight reaches its consumer in exported graphs: through ``Identity``,
through ``Cast`` (float16 storage), and through ``DequantizeLinear`` (int8 storage with a
per-channel scale)::

    x [-1, 3, 8, 8] -> Conv "conv1" (W: Constant) -> BatchNormalization "bn1" (Constants)
      -> Relu -> Conv "conv2" (W: Constant -> Identity) -> Relu
      -> Conv "conv3" (W: float16 Constant -> Cast) -> Relu
      -> Conv "conv4" (W: int8 Constant -> DequantizeLinear, axis 0) -> Relu
      -> GlobalAveragePool -> Flatten -> MatMul "fc" (W: Constant) -> Add (b: Constant) -> y
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.models.builder import IR_VERSION

INPUT = "x"
OPSET = 13
CLASSES = 5


class _Graph:
    """``twin``: the same model the plain way, the expected numbers' oracle: initializers,
    weights stored as float32 (no Identity, Cast or DequantizeLinear), a symbolic batch."""

    def __init__(self, twin: bool, seed: int = 3) -> None:
        self.rng = np.random.default_rng(seed)
        self.twin = twin
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        if self.twin:
            self.inits.append(numpy_helper.from_array(array, name))
            return name
        tensor = numpy_helper.from_array(array, f"{name}_value")
        self.nodes.append(
            helper.make_node("Constant", [], [name], name=f"{name}_const", value=tensor)
        )
        return name

    def stored(self, name: str, array: np.ndarray, *chain: tuple[str, dict[str, object]]) -> str:
        """A float weight reached through ``chain`` (op type, attributes) in the export, or
        the same float values as an initializer in the twin."""
        if self.twin:
            return self.constant(name, array)
        value = self.constant(name, array)
        for op, attrs in chain:
            value = self.node(op, [value], f"{name}_{op.lower()}", **attrs)
        return value

    def rand(self, name: str, shape: tuple[int, ...], low: float = -0.5, high: float = 0.5) -> str:
        return self.constant(name, self.rng.uniform(low, high, shape).astype(np.float32))

    def node(self, op: str, inputs: list[str], name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def conv(self, x: str, name: str, weight: str, bias: str | None = None) -> str:
        inputs = [x, weight] + ([bias] if bias else [])
        return self.node("Conv", inputs, name, kernel_shape=[3, 3], pads=[1, 1, 1, 1])


def build_paddle_like(twin: bool = False) -> onnx.ModelProto:
    g = _Graph(twin)
    x = g.conv(INPUT, "conv1", g.rand("conv1.w_0", (8, 3, 3, 3)))
    bn = [
        g.rand("bn1.w_0", (8,), 0.5, 1.5),
        g.rand("bn1.b_0", (8,)),
        g.rand("bn1.w_1", (8,)),
        g.rand("bn1.w_2", (8,), 0.5, 1.5),
    ]
    x = g.node("Relu", [g.node("BatchNormalization", [x, *bn], "bn1", epsilon=1e-5)], "relu1")
    w2 = g.rng.uniform(-0.5, 0.5, (12, 8, 3, 3)).astype(np.float32)
    w2 = g.stored("conv2.w_0", w2, ("Identity", {}))
    x = g.node("Relu", [g.conv(x, "conv2", w2, g.rand("conv2.b_0", (12,)))], "relu2")
    half = g.rng.uniform(-0.5, 0.5, (10, 12, 3, 3)).astype(np.float16)
    w3 = g.stored("conv3.w_0", half, ("Cast", {"to": TensorProto.FLOAT}))
    if twin:
        g.inits[-1] = numpy_helper.from_array(half.astype(np.float32), "conv3.w_0")
    x = g.node("Relu", [g.conv(x, "conv3", w3, g.rand("conv3.b_0", (10,)))], "relu3")
    q = g.rng.integers(-100, 100, (6, 10, 3, 3)).astype(np.int8)
    scales = g.rng.uniform(0.002, 0.006, (6,)).astype(np.float32)
    zeros = g.rng.integers(-3, 3, (6,)).astype(np.int8)
    if twin:
        dequantized = (q.astype(np.float32) - zeros[:, None, None, None]) * scales[
            :, None, None, None
        ]
        w4 = g.constant("conv4.w_0", dequantized.astype(np.float32))
    else:
        scale, zero = g.constant("conv4.scale", scales), g.constant("conv4.zero", zeros)
        w4 = g.node(
            "DequantizeLinear", [g.constant("conv4.w_0", q), scale, zero], "conv4.dq", axis=0
        )
    x = g.node("Relu", [g.conv(x, "conv4", w4, g.rand("conv4.b_0", (6,)))], "relu4")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    y = g.node("MatMul", [x, g.rand("fc.w_0", (6, CLASSES))], "fc")
    g.nodes.append(helper.make_node("Add", [y, g.rand("fc.b_0", (CLASSES,))], ["y"], name="fc_add"))
    batch: int | str = "N" if twin else -1
    graph = helper.make_graph(
        g.nodes,
        "paddle",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, CLASSES])],
        g.inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
