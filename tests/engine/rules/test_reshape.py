"""Rules in onnxrecede/engine/rules/reshape.py: Flatten and Reshape (and the flatten -> Gemm
head in test_linear.py)."""

from __future__ import annotations

import numpy as np

from tests.engine.rules.helpers import assert_barrier, const, prune_through, sandwich
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
