"""Rules in onnxrecede/engine/rules/layout.py: Transpose, Squeeze/Unsqueeze, Expand/Tile,
Resize/Upsample."""

from __future__ import annotations

import numpy as np

from tests.engine.rules.helpers import (
    SYMBOLIC_BATCH,
    assert_barrier,
    assert_oracle_at_batch,
    const,
    prune_through,
    sandwich,
)
from tests.models.handmade import GraphBuilder


def _ints(g: GraphBuilder, name: str, values) -> str:
    return const(g, name, np.asarray(values, np.int64))


def test_transpose_moves_the_channel_axis():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Relu", [g.op("Transpose", [x], name="op", perm=[0, 3, 2, 1])])
        return g.op("Transpose", [y], name="back", perm=[0, 3, 2, 1]), 8

    prune_through(sandwich(middle))


def test_squeeze_unsqueeze_shift_the_channel_axis():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Unsqueeze", [x, _ints(g, "ax0", [0])], name="unsq")  # [1, 1, 8, 8, 8]
        y = g.op("Relu", [y])
        return g.op("Squeeze", [y, _ints(g, "ax1", [0])], name="sq"), 8

    prune_through(sandwich(middle))


def test_squeeze_without_axes_drops_size_one_axes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Squeeze", [x], name="sq")  # [8, 8, 8]
        return g.op("Unsqueeze", [y, _ints(g, "ax", [0])], name="unsq"), 8

    prune_through(sandwich(middle))


def test_squeeze_barrier_on_the_channel_axis():
    def build():
        g = GraphBuilder()
        x = g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])
        y = g.op("Squeeze", [x, _ints(g, "ax", [1, 2, 3])], name="sq")  # malformed on purpose
        return g.model(y, (1,), 21)

    assert_barrier(build(), "Squeeze", "sq", r"squeezes the channel axis")


def test_expand_and_tile_pass_channels_through():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Expand", [x, _ints(g, "shape", [2, 8, 8, 8])], name="expand")
        y = g.op("Tile", [y, _ints(g, "reps", [1, 1, 1, 1])], name="tile")
        return g.op("ReduceMean", [y, _ints(g, "ax", [0])]), 8

    pruned, _ = prune_through(sandwich(middle))
    expand = next(n for n in pruned.graph if n.name == "expand")
    assert expand.inputs[1].const_value.numpy().tolist() == [2, 4, 8, 8]


def test_expand_barrier_broadcasting_the_channel_axis():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        one = g.conv(x, "conv_one", 8, 1)
        return g.op("Expand", [one, _ints(g, "shape", [1, 8, 8, 8])], name="expand"), 8

    assert_barrier(sandwich(middle), "Expand", "expand", r"broadcasts the channel axis",
                   producer="conv_one", importances={"conv_a": [1.0] * 8})  # fmt: skip


def test_tile_barrier_repeating_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Tile", [x, _ints(g, "reps", [1, 2, 1, 1])], name="tile"), 16

    assert_barrier(sandwich(middle), "Tile", "tile", r"repeats the channel axis")


def test_resize_with_scales_and_sizes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scales = const(g, "scales", np.array([1, 1, 2, 2], np.float32))
        y = g.op("Resize", [x, "", scales], name="up", mode="nearest")
        sizes = _ints(g, "sizes", [1, 8, 8, 8])
        return g.op("Resize", [y, "", "", sizes], name="down", mode="nearest"), 8

    pruned, _ = prune_through(sandwich(middle))
    down = next(n for n in pruned.graph if n.name == "down")
    assert down.inputs[3].const_value.numpy().tolist() == [1, 4, 8, 8]


def test_upsample_opset9():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scales = const(g, "scales", np.array([1, 1, 2, 2], np.float32))
        return g.op("Upsample", [x, scales], name="up", mode="nearest"), 8

    prune_through(sandwich(middle, opset=9))


def test_resize_barrier_scaling_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scales = const(g, "scales", np.array([1, 2, 1, 1], np.float32))
        return g.op("Resize", [x, "", scales], name="up", mode="nearest"), 16

    assert_barrier(sandwich(middle), "Resize", "up", r"rescales the channel axis")


def test_resize_barrier_runtime_scales():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scales = g.op("RandomUniform", [], shape=[4], low=1.0, high=1.0)
        return g.op("Resize", [x, "", scales], name="up", mode="nearest"), 8

    assert_barrier(sandwich(middle), "Resize", "up", r"scales are computed at run time")


# --------------------------------------------------------------- symbolic dims (tf2onnx, Keras)


def _pooled(g: GraphBuilder, x: str) -> str:
    return g.op("ReduceMean", [x, _ints(g, "hw", [2, 3])], name="pool", keepdims=0)  # [N, 8]


def test_unsqueeze_and_expand_with_a_symbolic_batch():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        s = g.op("Unsqueeze", [_pooled(g, x), _ints(g, "ax", [2, 3])], name="unsq")  # [N,8,1,1]
        s = g.op("Expand", [s, _ints(g, "hw_shape", [1, 1, 8, 8])], name="expand")  # [N,8,8,8]
        return g.op("Mul", [x, g.op("Sigmoid", [s])]), 8

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    pruned, _ = prune_through(model)
    assert_oracle_at_batch(model, pruned, 3)


def test_squeeze_without_axes_over_a_symbolic_batch_names_shape():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        pooled = g.op("GlobalAveragePool", [x])  # [N, 8, 1, 1]
        s = g.op("Squeeze", [pooled], name="sq")  # rank 1 if N == 1, else 2
        s = g.op("Unsqueeze", [s, _ints(g, "ax", [0, 2, 3])], name="unsq")
        return g.op("Mul", [x, g.op("Sigmoid", [s])]), 8

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    assert_barrier(
        model,
        "Squeeze",
        "sq",
        r"^it squeezes the axes of size 1 and N is symbolic; give the input dims with --shape "
        r"NAME:DIMS \(dynamic inputs: input \[N, 3, 8, 8\]\)$",
    )
    prune_through(model, input_shapes={"input": (1, 3, 8, 8)})  # --shape: the batch squeezed too
