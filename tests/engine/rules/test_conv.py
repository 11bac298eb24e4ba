"""Rules in onnxrecede/engine/rules/conv.py: Conv and ConvTranspose, plain, depthwise, grouped."""

from __future__ import annotations

import numpy as np

from tests.engine.rules.helpers import assert_barrier, const, prune_through, sandwich
from tests.models.handmade import GraphBuilder


def _identity(g: GraphBuilder, x: str) -> tuple[str, int]:
    return x, 8


def test_conv_produces_and_consumes_channels():
    pruned, _ = prune_through(sandwich(_identity))
    node = next(n for n in pruned.graph if n.name == "conv_a")
    assert node.inputs[1].const_value.shape[0] == 4 and node.inputs[2].const_value.shape[0] == 4


def test_conv_without_bias():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.rand("conv_n.weight", (8, 8, 1, 1))
        return g.op("Conv", [x, w], name="conv_n", kernel_shape=[1, 1]), 8

    pruned, report = prune_through(
        sandwich(middle),
        consumer="conv_n",
        importances={"conv_a": [0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4]},
    )
    assert "conv_n" not in report.removed_channels


def test_conv_transpose_consumes_and_produces():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.rand("up.weight", (8, 6, 2, 2))
        b = g.rand("up.bias", (6,))
        return g.op("ConvTranspose", [x, w, b], name="up", kernel_shape=[2, 2], strides=[2, 2]), 6

    model = sandwich(middle)
    pruned, _ = prune_through(model, consumer="up", consumer_axis=0)
    # ...and as a producer: its own 6 output channels, removed before conv_b
    imp = {"up": [0.9, 0.1, 0.8, 0.2, 0.7, 0.3]}
    pruned, _ = prune_through(model, removed=[1, 3, 5], producer="up", importances=imp)
    up = next(n for n in pruned.graph if n.name == "up")
    assert up.inputs[1].const_value.shape[1] == 3 and up.inputs[2].const_value.shape[0] == 3


def test_grouped_conv_transpose_produces_per_group():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.rand("up.weight", (8, 3, 2, 2))  # group 2: 8 in, 6 out
        return g.op("ConvTranspose", [x, w], name="up", kernel_shape=[2, 2], strides=[2, 2],
                    group=2), 6  # fmt: skip

    # position k of each group is one channel: conv_a's [1, 5] and [3, 7] go together
    prune_through(sandwich(middle), consumer="up", consumer_axis=0)


def test_depthwise_conv_couples_input_and_output():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.conv(x, "dw", 8, 8, group=8), 8

    pruned, report = prune_through(sandwich(middle))
    dw = next(n for n in pruned.graph if n.name == "dw")
    assert dw.attributes["group"].value == 4
    assert dw.inputs[1].const_value.shape == (4, 1, 3, 3)
    assert report.removed_channels["dw"] == [1, 3, 5, 7]


def test_depthwise_conv_with_multiplier():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.conv(x, "dw", 8, 16, group=8), 16

    pruned, report = prune_through(sandwich(middle), consumer_channels=8)
    assert report.removed_channels["dw"] == [2, 3, 6, 7, 10, 11, 14, 15]
    dw = next(n for n in pruned.graph if n.name == "dw")
    assert dw.attributes["group"].value == 4 and dw.inputs[1].const_value.shape[0] == 8


def test_grouped_conv_prunes_evenly_per_group():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.conv(x, "gc", 8, 8, group=2), 8

    # channels (1, 5) and (3, 7) are coupled by the groups; max importance 0.3 and 0.4 lowest
    pruned, report = prune_through(sandwich(middle), consumer="gc", consumer_channels=2)
    gc = next(n for n in pruned.graph if n.name == "gc")
    assert gc.attributes["group"].value == 2 and gc.inputs[1].const_value.shape == (8, 2, 3, 3)


def test_conv_barrier_weight_not_constant():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.op("RandomNormal", [], name="w_random", shape=[6, 8, 3, 3])
        return g.op("Conv", [x, w], name="conv_r", kernel_shape=[3, 3], pads=[1] * 4), 6

    assert_barrier(sandwich(middle), "Conv", "conv_r", r"weight is not a constant")


def test_conv_barrier_runtime_bias():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        bias = g.op("ReduceMean", [g.conv("input", "conv_c", 3, 8), const(g, "ax", np.array([0, 2, 3]))],
                    keepdims=0)  # fmt: skip
        w = g.rand("conv_r.weight", (8, 8, 3, 3))
        return g.op("Conv", [x, w, bias], name="conv_r", kernel_shape=[3, 3], pads=[1] * 4), 8

    assert_barrier(sandwich(middle), "Conv", "conv_r", r"bias is computed at run time")


def test_conv_barrier_channels_not_on_axis_1():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Transpose", [x], name="swap", perm=[0, 2, 1, 3]), 8

    assert_barrier(sandwich(middle), "Conv", "conv_b", r"input channel axis \(2, 8 channels\)")


def test_conv_barrier_uneven_groups():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.rand("gc.weight", (6, 2, 3, 3))  # 8 inputs in 4 groups of 2, 6 outputs: 6 % 4 != 0
        return g.op("Conv", [x, w], name="gc", kernel_shape=[3, 3], pads=[1] * 4, group=4), 6

    assert_barrier(sandwich(middle), "Conv", "gc", r"grouped convolution \(group=4\) with uneven")
