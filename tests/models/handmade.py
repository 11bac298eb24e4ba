"""ONNX models built by hand with ``onnx.helper``, for ops the torch exporters rarely emit.

Every model reads ``input`` [1, 3, 8, 8] and has the shape::

    input -> Conv "conv_a" (3->8) -> Relu -> [op under test] -> Conv "conv_b" -> Relu
          -> GlobalAveragePool -> Flatten -> Gemm "fc" (->10) -> output

unless its builder says otherwise; ``conv_b``'s outputs are always prunable, so ``prunable`` is
True everywhere and the interest lies in what the op under test allows or blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tests.models.builder import INPUT_SHAPE, GraphBuilder  # noqa: F401  (INPUT_SHAPE: re-exported)
from tests.models.expect import Expect
from tests.models.keras_like import KERAS_LIKE


@dataclass(frozen=True)
class HandmadeModel:
    """A registry entry: how to build the model and what a pruner must find."""

    name: str
    build: Callable[[], onnx.ModelProto]
    expect: Expect


def _stem(g: GraphBuilder, cout: int = 8) -> str:
    return g.op("Relu", [g.conv("input", "conv_a", 3, cout)])


def _tail(g: GraphBuilder, x: str, cin: int, opset: int = 17, cout: int = 8) -> onnx.ModelProto:
    y = g.op("Relu", [g.conv(x, "conv_b", cin, cout)])
    return g.model(g.head(y, cout), (1, 10), opset)


def _sandwich(middle: Callable[[GraphBuilder, str], tuple[str, int]], opset: int = 17):
    """Builder for stem -> ``middle`` -> tail; ``middle`` returns (tensor, its channels)."""

    def build() -> onnx.ModelProto:
        g = GraphBuilder()
        x, channels = middle(g, _stem(g))
        return _tail(g, x, channels, opset)

    return build


# ----------------------------------------------------------------------------- channel-axis ops


def _split_branches(g: GraphBuilder, parts: Sequence[str], sizes: Sequence[int]) -> tuple[str, int]:
    branches = [
        g.op("Relu", [g.conv(p, f"branch{i}", c, 4)]) for i, (p, c) in enumerate(zip(parts, sizes))
    ]
    return g.op("Concat", branches, name="concat", axis=1), 4 * len(parts)


def _split13(g: GraphBuilder, x: str) -> tuple[str, int]:
    parts = g.multi("Split", [x, g.ints("split_sizes", [3, 5])], 2, name="split", axis=1)
    return _split_branches(g, parts, [3, 5])


def _split18(g: GraphBuilder, x: str) -> tuple[str, int]:
    parts = g.multi("Split", [x], 2, name="split", axis=1, num_outputs=2)
    return _split_branches(g, parts, [4, 4])


def _slice(g: GraphBuilder, x: str) -> tuple[str, int]:
    args = [g.ints("starts", [2]), g.ints("ends", [7]), g.ints("axes", [1]), g.ints("steps", [1])]
    return g.op("Slice", [x, *args], name="slice"), 5


def _gather(g: GraphBuilder, x: str) -> tuple[str, int]:
    return g.op("Gather", [x, g.ints("gather_idx", [0, 2, 3, 6, 7])], name="gather", axis=1), 5


def _prelu(g: GraphBuilder, x: str) -> tuple[str, int]:
    slope = g.rand("prelu.slope", (8, 1, 1), 0.05, 0.5)
    return g.op("PRelu", [g.conv(x, "conv_m", 8, 8), slope], name="prelu"), 8


def _pad(g: GraphBuilder, x: str) -> tuple[str, int]:
    pads = g.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])
    return g.op("Pad", [x, pads], name="pad", mode="constant"), 8


def _resize(g: GraphBuilder, x: str) -> tuple[str, int]:
    sizes = g.ints("resize_sizes", [1, 8, 16, 16])
    return g.op("Resize", [x, "", "", sizes], name="resize", mode="nearest"), 8


def _instance_norm(g: GraphBuilder, x: str) -> tuple[str, int]:
    scale, bias = g.rand("in.scale", (8,), 0.5, 1.5), g.rand("in.bias", (8,))
    return g.op("InstanceNormalization", [x, scale, bias], name="instnorm", epsilon=1e-5), 8


def _mul_add_init(g: GraphBuilder, x: str) -> tuple[str, int]:
    y = g.op("Mul", [x, g.rand("scale", (1, 8, 1, 1), 0.5, 1.5)], name="mul")
    return g.op("Add", [y, g.rand("shift", (1, 8, 1, 1))], name="add"), 8


def _const(g: GraphBuilder, name: str, array: np.ndarray) -> str:
    tensor = numpy_helper.from_array(array.astype(np.float32), f"{name}_value")
    return g.op("Constant", [], name=name, value=tensor)


def _mul_add_constant(g: GraphBuilder, x: str) -> tuple[str, int]:
    scale = _const(g, "scale_const", g.rng.uniform(0.5, 1.5, (1, 8, 1, 1)))
    shift = _const(g, "shift_const", g.rng.uniform(-0.5, 0.5, (1, 8, 1, 1)))
    return g.op("Add", [g.op("Mul", [x, scale], name="mul"), shift], name="add"), 8


def _channels_last_matmul(g: GraphBuilder, x: str) -> tuple[str, int]:
    y = g.op("Transpose", [x], name="to_nhwc", perm=[0, 2, 3, 1])
    y = g.op("MatMul", [y, g.rand("mlp.fc1.weight", (8, 12))], name="mlp_fc1")
    y = g.op("Relu", [g.op("Add", [y, g.rand("mlp.fc1.bias", (12,))])])
    y = g.op("MatMul", [y, g.rand("mlp.fc2.weight", (12, 8))], name="mlp_fc2")
    return g.op("Transpose", [y], name="to_nchw", perm=[0, 3, 1, 2]), 8


def _grouped(g: GraphBuilder, x: str) -> tuple[str, int]:
    return g.op("Relu", [g.conv(x, "conv_g", 8, 8, group=2)]), 8


def _runtime_bias(g: GraphBuilder, x: str) -> tuple[str, int]:
    """Bias as dynamo optimize=False writes it for a bias-less conv."""
    w = g.rand("conv_m.weight", (8, 8, 3, 3))
    n = g.op("Shape", [w], name="bias_shape", start=0, end=1)
    shape = g.op("Expand", [n, g.op("Constant", [], name="one", value_ints=[1])])
    zero = g.op("CastLike", [_const(g, "zero", np.array(0.0)), x])
    bias = g.op("Expand", [zero, shape], name="bias_expand")
    return g.op("Conv", [x, w, bias], name="conv_m", kernel_shape=[3, 3], pads=[1] * 4), 8


# ----------------------------------------------------------------------------- barriers


def _softmax(g: GraphBuilder, x: str) -> tuple[str, int]:
    return g.op("Softmax", [x], name="softmax", axis=1), 8


def _group_norm(g: GraphBuilder, x: str) -> tuple[str, int]:
    scale, bias = g.rand("gn.scale", (8,), 0.5, 1.5), g.rand("gn.bias", (8,))
    return g.op("GroupNormalization", [x, scale, bias], name="groupnorm", num_groups=2), 8


def _shuffle(g: GraphBuilder, x: str) -> tuple[str, int]:
    y = g.op("Reshape", [x, g.ints("shape5d", [1, 2, 4, 8, 8])], name="shuffle_split")
    y = g.op("Transpose", [y], name="shuffle_transpose", perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", [y, g.ints("shape4d", [1, 8, 8, 8])], name="shuffle_merge"), 8


CUSTOM_DOMAIN = "com.example"


def _custom_function() -> onnx.FunctionProto:
    """``com.example.Mystery(x) = x * sigmoid(x)``: a local function, so ORT can run it."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["y"]),
    ]
    return helper.make_function(
        CUSTOM_DOMAIN, "Mystery", ["x"], ["y"], nodes, [helper.make_opsetid("", 17)]
    )


def _build_custom_op() -> onnx.ModelProto:
    g = GraphBuilder()
    x = _stem(g)
    g.nodes.append(
        helper.make_node("Mystery", [x], ["mystery_out"], "mystery", domain=CUSTOM_DOMAIN)
    )
    model = _tail(g, "mystery_out", 8)
    model.opset_import.append(helper.make_opsetid(CUSTOM_DOMAIN, 1))
    model.functions.append(_custom_function())
    return model


# ----------------------------------------------------------------------------- Gemm / MatMul heads


def _gemm_head(hidden_trans_b: int) -> Callable[[], onnx.ModelProto]:
    """stem -> GAP -> Flatten -> Gemm (8->16) -> Relu -> Gemm (16->10), transB varied."""

    def weight(g: GraphBuilder, name: str, k: int, n: int, trans_b: int) -> str:
        return g.rand(name, (n, k) if trans_b else (k, n))

    def build() -> onnx.ModelProto:
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [_stem(g)])], axis=1)
        out_trans_b = 1 - hidden_trans_b
        w1 = weight(g, "fc1.weight", 8, 16, hidden_trans_b)
        x = g.op("Gemm", [x, w1, g.rand("fc1.bias", (16,))], name="fc1", transB=hidden_trans_b)
        w2 = weight(g, "fc2.weight", 16, 10, out_trans_b)
        x = g.op(
            "Gemm",
            [g.op("Relu", [x]), w2, g.rand("fc2.bias", (10,))],
            name="fc2",
            transB=out_trans_b,
        )
        return g.model(x, (1, 10))

    return build


def _build_matmul_2d() -> onnx.ModelProto:
    """stem -> GAP -> Flatten -> MatMul (8x16) + bias -> Relu -> MatMul (16x10)."""
    g = GraphBuilder()
    x = g.op("Flatten", [g.op("GlobalAveragePool", [_stem(g)])], axis=1)
    x = g.op("MatMul", [x, g.rand("mm1.weight", (8, 16))], name="mm1")
    x = g.op("Relu", [g.op("Add", [x, g.rand("mm1.bias", (16,))], name="mm1_bias")])
    x = g.op("MatMul", [x, g.rand("mm2.weight", (16, 10))], name="mm2")
    return g.model(x, (1, 10))


# ----------------------------------------------------------------------------- registry


def _ok(note: str) -> Expect:
    return Expect(prunable=True, note=note)


def _barrier(op: str, note: str) -> Expect:
    return Expect(prunable=True, barrier_ops=frozenset({op}), note=note)


_ENTRIES: list[tuple[str, Callable[[], onnx.ModelProto], Expect]] = [
    ("split13", _sandwich(_split13), _ok("Split opset 13, sizes input [3,5] on axis 1")),
    ("split18", _sandwich(_split18, opset=18), _ok("Split opset 18, num_outputs=2 on axis 1")),
    ("slice_channels", _sandwich(_slice), _ok("Slice channels 2..7 of conv_a")),
    ("gather_channels", _sandwich(_gather), _ok("Gather axis 1, constant indices")),
    ("prelu", _sandwich(_prelu), _ok("PRelu slope [8,1,1] sliced with conv_m")),
    ("pad_spatial", _sandwich(_pad), _ok("spatial Pad passes channels through")),
    ("resize_sizes", _sandwich(_resize), _ok("Resize with sizes [1,8,16,16]: channel entry")),
    ("instance_norm", _sandwich(_instance_norm), _ok("InstanceNormalization scale/bias [8]")),
    ("mul_add_init", _sandwich(_mul_add_init), _ok("Mul/Add with [1,8,1,1] initializers")),
    ("mul_add_constant", _sandwich(_mul_add_constant), _ok("Mul/Add with Constant nodes")),
    ("gemm_transb0", _gemm_head(0), _ok("hidden Gemm transB=0 (W[K,N]), output transB=1")),
    ("gemm_transb1", _gemm_head(1), _ok("hidden Gemm transB=1 (W[N,K]), output transB=0")),
    ("matmul_2d", _build_matmul_2d, _ok("MatMul with 2-D constant weight + Add bias")),
    (
        "channels_last_matmul",
        _sandwich(_channels_last_matmul),
        _ok("Transpose to NHWC, MatMul on last axis (hidden 12 prunable), back"),
    ),
    ("grouped_conv", _sandwich(_grouped), _ok("Conv group=2, not depthwise")),
    ("runtime_bias", _sandwich(_runtime_bias), _ok("Conv bias from Shape->Expand->CastLike")),
    ("softmax_channels", _sandwich(_softmax), _barrier("Softmax", "Softmax over axis 1")),
    (
        "group_norm",
        _sandwich(_group_norm, opset=21),
        _barrier("GroupNormalization", "GroupNormalization opset 21 (18 is deprecated), 2 groups"),
    ),
    ("custom_op", _build_custom_op, _barrier("Mystery", "com.example.Mystery (local function)")),
    ("reshape_shuffle", _sandwich(_shuffle), _barrier("Reshape", "channel shuffle, g=2")),
]

_ENTRIES += [
    (name, build, Expect(prunable=True, barrier_ops=frozenset({"Softmax"}), note=note))
    for name, build, note in KERAS_LIKE
]

HANDMADE: dict[str, HandmadeModel] = {
    name: HandmadeModel(name=name, build=build, expect=expect) for name, build, expect in _ENTRIES
}
