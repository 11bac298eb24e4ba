"""Rules in onnxrecede/engine/rules/reshape.py: Flatten and Reshape (and the flatten -> Gemm
head in test_linear.py)."""

from __future__ import annotations

import numpy as np
import onnx

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


def test_reshape_keeping_the_channel_axis():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Reshape", [x, _ints(g, "flat", [1, 8, 64])], name="flat")
        y = g.op("Softmax", [y], axis=2)
        return g.op("Reshape", [y, _ints(g, "back", [1, 8, 8, 8])], name="back"), 8

    pruned, _ = prune_through(sandwich(middle))
    flat = next(n for n in pruned.graph if n.name == "flat")
    assert flat.inputs[1].const_value.numpy().tolist() == [1, 4, 64]


def test_reshape_with_computed_shape_through_concat():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        batch = g.op("Shape", [x], start=0, end=1)
        shape = g.op("Concat", [batch, _ints(g, "rest", [8, 64])], name="shape_cat", axis=0)
        y = g.op("Reshape", [x, shape], name="flat")
        return g.op("Reshape", [y, _ints(g, "back", [1, 8, 8, 8])], name="back"), 8

    prune_through(sandwich(middle))


def test_reshape_barrier_channel_shuffle():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Reshape", [x, _ints(g, "s5", [1, 2, 4, 8, 8])], name="split_c")
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return g.op("Reshape", [y, _ints(g, "s4", [1, 8, 8, 8])], name="merge_c"), 8

    assert_barrier(sandwich(middle), "Reshape", "split_c", r"splits the channel axis")


def test_flatten_barrier_merging_with_leading_axes():
    def build():
        g = GraphBuilder()
        x = g.op("Transpose", [g.conv("input", "conv_a", 3, 8)], perm=[0, 2, 1, 3])
        x = g.op("Flatten", [x], name="flat", axis=3)  # [1, H, C, W] -> [H*C, W]
        return g.model(g.op("Gemm", [x, g.rand("w", (8, 10))], name="fc"), (64, 10), 21)

    assert_barrier(
        build(),
        "Flatten",
        "flat",
        r"^Flatten at axis 3 merges the channel axis \(axis 2, 8 channels\) of the input "
        r"\[1, 8, 8, 8\] with the axes before it$",
    )


# --------------------------------------------------------------- symbolic dims (tf2onnx, Keras)

DYNAMIC_INPUT = (
    r"give the input dims with --shape NAME:DIMS \(dynamic inputs: input \[N, 3, 8, 8\]\)$"
)


def _pooled(g: GraphBuilder, x: str) -> str:
    """[N, 8] as Keras' GlobalAveragePooling2D exports: ReduceMean over H, W, keepdims 0."""
    return g.op("ReduceMean", [x, _ints(g, "hw", [2, 3])], name="pool", keepdims=0)


def _excite(g: GraphBuilder, x: str, target: list[int]) -> tuple[str, int]:
    s = g.op("Reshape", [_pooled(g, x), _ints(g, "se_shape", target)], name="se_reshape")
    return g.op("Mul", [x, g.op("Sigmoid", [s])], name="excite"), 8


def test_reshape_minus_one_absorbs_a_symbolic_batch():
    model = sandwich(lambda g, x: _excite(g, x, [-1, 8, 1, 1]), batch=SYMBOLIC_BATCH)
    pruned, _ = prune_through(model)
    se = next(n for n in pruned.graph if n.name == "se_reshape")
    assert se.inputs[1].const_value.numpy().tolist() == [-1, 4, 1, 1]
    assert_oracle_at_batch(model, pruned, 3)


def test_reshape_zero_copies_a_symbolic_dim():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Reshape", [x, _ints(g, "flat", [0, 0, -1])], name="flat")  # [N, 8, 64]
        y = g.op("Softmax", [y], axis=2)
        return g.op("Reshape", [y, _ints(g, "back", [0, 8, 8, 8])], name="back"), 8

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    pruned, _ = prune_through(model)
    shapes = {
        n.name: n.inputs[1].const_value.numpy().tolist()
        for n in pruned.graph
        if n.op_type == "Reshape"
    }
    assert shapes == {"flat": [0, 0, -1], "back": [0, 4, 8, 8]}
    assert_oracle_at_batch(model, pruned, 2)


def test_reshape_target_reading_the_batch_from_shape():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        batch = g.op("Gather", [g.op("Shape", [x]), _ints(g, "zero", [0])], axis=0)
        flat = g.op("Concat", [batch, _ints(g, "rest", [8, 64])], name="flat_shape", axis=0)
        y = g.op("Softmax", [g.op("Reshape", [x, flat], name="flat")], axis=2)
        back = g.op("Concat", [batch, _ints(g, "rest4", [8, 8, 8])], name="back_shape", axis=0)
        return g.op("Reshape", [y, back], name="back"), 8

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    pruned, _ = prune_through(model)
    assert_oracle_at_batch(model, pruned, 3)


def test_reshape_barrier_batch_frozen_in_the_target():
    model = sandwich(lambda g, x: _excite(g, x, [1, 8, 1, 1]), batch=SYMBOLIC_BATCH)
    assert_barrier(
        model,
        "Reshape",
        "se_reshape",
        r"^the target shape \[1, 8, 1, 1\] could not be matched to the input \[N, 8\] because "
        r"N is symbolic; " + DYNAMIC_INPUT,
    )
    pruned, _ = prune_through(model, input_shapes={"input": (1, 3, 8, 8)})  # --shape
    assert [getattr(d, "value", d) for d in pruned.graph.inputs[0].shape] == ["N", 3, 8, 8]


def test_reshape_barrier_channel_shuffle_with_symbolic_batch():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Reshape", [x, _ints(g, "s5", [-1, 2, 4, 8, 8])], name="split_c")
        y = g.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
        return g.op("Reshape", [y, _ints(g, "s4", [-1, 8, 8, 8])], name="merge_c"), 8

    assert_barrier(
        sandwich(middle, batch=SYMBOLIC_BATCH),
        "Reshape",
        "split_c",
        r"^the target shape \[-1, 2, 4, 8, 8\] splits the channel axis \(axis 1, 8 channels\) "
        r"of the input \[N, 8, 8, 8\] or merges it with the axes before it",
    )


def _flatten_dense(input_shape) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.op("Flatten", [g.conv("input", "conv_a", 3, 8)], name="flat", axis=1)
    y = g.op("Gemm", [x, g.rand("w", (8 * 64, 10))], name="fc")
    return g.model(y, (1, 10), 21, input_shape=input_shape)


def test_flatten_barrier_symbolic_spatial_dims_and_shape_binding():
    model = _flatten_dense((1, 3, "H", "W"))
    assert_barrier(
        model,
        "Flatten",
        "flat",
        r"^Flatten at axis 1 could not be matched to the input \[1, 8, (\w+), (\w+)\] because "
        r"\1 and \2 are symbolic; give the input dims with --shape NAME:DIMS \(dynamic inputs: input "
        r"\[1, 3, H, W\]\)$",
    )
    prune_through(model, consumer="fc", consumer_axis=0, consumer_channels=4 * 64,
                  input_shapes={"input": (1, 3, 8, 8)})  # fmt: skip
