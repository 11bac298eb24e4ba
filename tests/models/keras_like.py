"""Models built by hand the way tf2onnx exports Keras models (TensorFlow 2, dynamic batch).

What tf2onnx leaves in the graph, reproduced here:

- an NHWC input ``input_1`` [unk__618, 16, 16, 3] with a symbolic batch, transposed once to
  NCHW; the output's batch is another symbol (``unk__619``);
- BatchNormalization as ``Mul`` + ``Add`` with [C, 1, 1] constants; Dense as ``MatMul`` + ``Add``;
- swish as ``x * Sigmoid(x)``, hard-swish as ``x * Clip(x + 3, 0, 6) * (1/6)``;
- squeeze-and-excite: ``ReduceMean`` over H, W (keepdims 0) -> ``Reshape`` to the constant
  ``[-1, C, 1, 1]`` -> 1x1 Conv -> act -> 1x1 Conv -> gate -> ``Mul``;
- SeparableConv2D as a depthwise Conv without bias followed by a pointwise 1x1 Conv;
- Concatenate on the channel axis, residual ``Add``; a softmax classifier head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.models.builder import IR_VERSION, GraphBuilder

INPUT = "input_1"
BATCH = "unk__618"
HW = 16
OPSET = 15
CLASSES = 10


class Tf2onnxBuilder(GraphBuilder):
    """:class:`GraphBuilder` with tf2onnx's spellings of Keras layers."""

    def nchw_input(self) -> str:
        return self.op("Transpose", [INPUT], name="input_nchw", perm=[0, 3, 1, 2])

    def bn(self, x: str, name: str, c: int) -> str:
        scale = self.init(f"{name}/mul", self.rng.uniform(0.5, 1.5, (c, 1, 1)).astype(np.float32))
        shift = self.rand(f"{name}/add", (c, 1, 1))
        return self.op("Add", [self.op("Mul", [x, scale], name=f"{name}_mul"), shift], name=name)

    def swish(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def hard_sigmoid(self, x: str) -> str:
        three = self.scalar("three", 3.0)
        clipped = self.op(
            "Clip", [self.op("Add", [x, three]), self.scalar("zero", 0.0), self.scalar("six", 6.0)]
        )
        return self.op("Mul", [clipped, self.scalar("sixth", 1.0 / 6.0)])

    def hard_swish(self, x: str) -> str:
        return self.op("Mul", [x, self.hard_sigmoid(x)])

    def scalar(self, name: str, value: float) -> str:
        if not any(t.name == name for t in self.inits):
            self.init(name, np.asarray(value, np.float32))
        return name

    def conv_bn(self, x: str, name: str, cin: int, cout: int, k: int = 1, group: int = 1) -> str:
        return self.bn(self.conv(x, name, cin, cout, k, group), f"{name}_bn", cout)

    def depthwise(self, x: str, name: str, c: int, k: int = 3) -> str:
        w = self.rand(f"{name}.weight", (c, 1, k, k))
        return self.op("Conv", [x, w], name=name, kernel_shape=[k, k], pads=[k // 2] * 4, group=c)

    def pool(self, x: str, name: str) -> str:
        return self.op("ReduceMean", [x], name=name, axes=[2, 3], keepdims=0)

    def squeeze_excite(
        self, x: str, name: str, c: int, reduced: int, hard: bool = False, target: int = -1
    ) -> str:
        shape = self.ints(f"{name}/reshape_shape", [target, c, 1, 1])
        s = self.op("Reshape", [self.pool(x, f"{name}_pool"), shape], name=f"{name}_reshape")
        s = self.conv(s, f"{name}_reduce", c, reduced, 1)
        s = self.op("Relu", [s]) if hard else self.swish(s)
        s = self.conv(s, f"{name}_expand", reduced, c, 1)
        gate = self.hard_sigmoid(s) if hard else self.op("Sigmoid", [s])
        return self.op("Mul", [x, gate], name=f"{name}_excite")

    def dense(self, x: str, name: str, cin: int, cout: int) -> str:
        y = self.op("MatMul", [x, self.rand(f"{name}/kernel", (cin, cout))], name=name)
        return self.op("Add", [y, self.rand(f"{name}/bias", (cout,))], name=f"{name}_bias")

    def keras_model(self, logits: str) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Softmax", [logits], ["output"], name="predictions_sm"))
        graph = helper.make_graph(
            self.nodes,
            "tf2onnx",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [BATCH, HW, HW, 3])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["unk__619", CLASSES])],
            self.inits,
        )
        opsets = [helper.make_opsetid("", OPSET)]
        return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)


def _mbconv(g: Tf2onnxBuilder, x: str, name: str, cin: int, expand: int, cout: int) -> str:
    """EfficientNet's MBConv: expand, depthwise, SE, project (+ residual when shapes match)."""
    c = cin * expand
    y = g.swish(g.conv_bn(x, f"{name}_expand", cin, c))
    y = g.swish(g.bn(g.depthwise(y, f"{name}_dw", c), f"{name}_dw_bn", c))
    y = g.squeeze_excite(y, f"{name}_se", c, max(1, cin // 4))
    y = g.conv_bn(y, f"{name}_project", c, cout)
    return g.op("Add", [x, y], name=f"{name}_add") if cin == cout else y


def build_efficientnet_like(se_target: int = -1) -> onnx.ModelProto:
    """Stem, two MBConv blocks with SE (the second residual), top conv, pool, dense softmax.

    ``se_target`` is the SE reshape's first entry: ``-1`` as tf2onnx writes it, ``1`` as some
    older exports froze it (a barrier only because the batch is symbolic)."""
    g = Tf2onnxBuilder()
    x = g.swish(g.conv_bn(g.nchw_input(), "stem_conv", 3, 8, k=3))
    x = _mbconv(g, x, "block1a", 8, 1, 8)
    x = _mbconv(g, x, "block2a", 8, 4, 12)
    if se_target != -1:
        x = g.squeeze_excite(x, "block3a_se", 12, 3, target=se_target)
    x = g.swish(g.conv_bn(x, "top_conv", 12, 16))
    return g.keras_model(g.dense(g.pool(x, "avg_pool"), "predictions", 16, CLASSES))


def build_mobilenetv3_like() -> onnx.ModelProto:
    """Hard-swish stem, inverted residuals with hard-sigmoid SE, a hidden dense layer."""
    g = Tf2onnxBuilder()
    x = g.hard_swish(g.conv_bn(g.nchw_input(), "conv", 3, 8, k=3))
    y = g.op("Relu", [g.conv_bn(x, "expanded_conv_expand", 8, 16)])
    y = g.op("Relu", [g.bn(g.depthwise(y, "expanded_conv_dw", 16), "expanded_conv_dw_bn", 16)])
    y = g.squeeze_excite(y, "expanded_conv_se", 16, 4, hard=True)
    x = g.op("Add", [x, g.conv_bn(y, "expanded_conv_project", 16, 8)], name="expanded_conv_add")
    y = g.hard_swish(g.conv_bn(x, "expanded_conv_1_expand", 8, 24))
    y = g.hard_swish(g.bn(g.depthwise(y, "expanded_conv_1_dw", 24), "expanded_conv_1_dw_bn", 24))
    y = g.squeeze_excite(y, "expanded_conv_1_se", 24, 6, hard=True)
    x = g.conv_bn(y, "expanded_conv_1_project", 24, 12)
    x = g.hard_swish(g.conv_bn(x, "conv_1", 12, 20))
    x = g.hard_swish(g.dense(g.pool(x, "avg_pool"), "dense_hidden", 20, 16))
    return g.keras_model(g.dense(x, "predictions", 16, CLASSES))


def build_custom_cnn() -> onnx.ModelProto:
    """SeparableConv2D, a plain conv branch, Concatenate, BatchNorm after the Concat, a
    residual Add, pool, two dense layers."""
    g = Tf2onnxBuilder()
    x = g.op("Relu", [g.conv_bn(g.nchw_input(), "conv2d", 3, 8, k=3)])
    a = g.depthwise(x, "separable_conv2d_dw", 8)
    a = g.op("Relu", [g.bn(g.conv(a, "separable_conv2d_pw", 8, 8, 1), "sep_bn", 8)])
    b = g.op("Relu", [g.conv(x, "conv2d_1", 8, 8, 3)])
    cat = g.op("Concat", [a, b], name="concatenate", axis=1)
    cat = g.op("Relu", [g.bn(cat, "concat_bn", 16)])
    r = g.op("Relu", [g.conv(cat, "conv2d_2", 16, 16, 3)])
    x = g.op("Add", [cat, r], name="add")
    x = g.op("Relu", [g.dense(g.pool(x, "avg_pool"), "dense", 16, 12)])
    return g.keras_model(g.dense(x, "predictions", 12, CLASSES))


KERAS_LIKE: Sequence[tuple[str, Callable[[], onnx.ModelProto], str]] = (
    ("keras_efficientnet", build_efficientnet_like, "tf2onnx EfficientNet: SE [-1,C,1,1]"),
    ("keras_mobilenetv3", build_mobilenetv3_like, "tf2onnx MobileNetV3: hard-swish, SE"),
    ("keras_custom_cnn", build_custom_cnn, "tf2onnx: SeparableConv2D, Concat, residual"),
)
