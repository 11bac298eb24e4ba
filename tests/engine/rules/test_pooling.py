"""Rules in onnxrecede/engine/rules/pooling.py: pooling and reductions."""

from __future__ import annotations

import numpy as np
import pytest

from onnxrecede.engine.rules.pooling import POOL_OPS, REDUCE_OPS
from tests.engine.rules.helpers import assert_barrier, const, prune_through, sandwich
from tests.models.handmade import GraphBuilder


@pytest.mark.parametrize("op", POOL_OPS)
def test_pool_passes_channels_through(op):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        if op.startswith("Global"):
            return g.op(op, [x], name="op"), 8
        return g.op(op, [x], name="op", kernel_shape=[2, 2], strides=[2, 2]), 8

    prune_through(sandwich(middle))


def test_maxpool_barrier_indices_used():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y, idx = g.multi("MaxPool", [x], 2, name="pool", kernel_shape=[2, 2], strides=[2, 2])
        zero = g.op("Mul", [g.op("Cast", [idx], to=1), const(g, "z", np.float32(0))])
        return g.op("Add", [y, zero]), 8

    assert_barrier(sandwich(middle), "MaxPool", "pool", r"Indices output")


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_over_spatial_axes_passes_channels(op):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        if op in ("ReduceLogSum", "ReduceProd"):
            x = g.op("Sigmoid", [x])  # a positive input keeps the log finite
        axes = const(g, "axes", np.array([3], np.int64))
        return g.op(op, [x, axes], name="op", keepdims=1), 8

    prune_through(sandwich(middle))


def test_reduce_without_keepdims_moves_the_channel_axis():
    """ReduceMean over axes 0 and 2 without keepdims: channels move to axis 0 of [8, 8]."""

    def build():
        g = GraphBuilder()
        x = g.conv("input", "conv_a", 3, 8)
        y = g.op("ReduceMean", [x, const(g, "axes", np.array([0, 2], np.int64))], name="op",
                 keepdims=0)  # fmt: skip
        y = g.op("Transpose", [y], perm=[1, 0])  # [W, C]
        out = g.op("Gemm", [y, g.rand("fc.weight", (8, 10))], name="fc")
        return g.model(out, (8, 10), 21)

    prune_through(build(), consumer="fc", consumer_axis=0)


def test_reduce_barrier_over_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("ReduceMax", [x, const(g, "axes", np.array([1], np.int64))], name="op")
        return g.op("Expand", [y, const(g, "shape", np.array([1, 8, 8, 8], np.int64))]), 8

    assert_barrier(sandwich(middle), "ReduceMax", "op", r"ReduceMax reduces over the channel axis")


def test_reduce_barrier_every_axis():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("ReduceSum", [x], name="op")
        return g.op("Add", [g.conv("input", "conv_c", 3, 8), y]), 8

    assert_barrier(sandwich(middle), "ReduceSum", "op", r"reduces every axis")


def test_reduce_noop_with_empty_axes_passes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("ReduceSum", [x], name="op", noop_with_empty_axes=1), 8

    prune_through(sandwich(middle))


def test_reduce_barrier_runtime_axes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        axes = g.op("Cast", [g.op("RandomUniform", [], shape=[1], low=3.0, high=3.5)], to=7)
        y = g.op("ReduceMean", [x, axes], name="op")
        return g.op("Add", [x, y]), 8

    assert_barrier(sandwich(middle), "ReduceMean", "op", r"axes are computed at run time")
