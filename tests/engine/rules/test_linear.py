"""Rules in onnxrecede/engine/rules/linear.py: Gemm and MatMul with a constant weight."""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.rules.helpers import assert_barrier, const, prune_through, sandwich
from tests.models.handmade import GraphBuilder

FC1_IMP = {
    "fc1": [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.95, 0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 0.45]
}


def _mlp_head(trans_b: int, spatial: bool = False):
    """conv_a -> [GAP] -> Flatten -> Gemm fc1 (->16) -> Relu -> Gemm fc2 (->10) -> output."""

    def build():
        g = GraphBuilder()
        x = g.conv("input", "conv_a", 3, 8)
        if not spatial:
            x = g.op("GlobalAveragePool", [x])
        k = 8 * (64 if spatial else 1)
        x = g.op("Flatten", [x], name="flatten", axis=1)
        w1 = g.rand("fc1.weight", (16, k) if trans_b else (k, 16))
        x = g.op("Gemm", [x, w1, g.rand("fc1.bias", (16,))], name="fc1", transB=trans_b)
        w2 = g.rand("fc2.weight", (10, 16) if 1 - trans_b else (16, 10))
        x = g.op("Gemm", [g.op("Relu", [x]), w2], name="fc2", transB=1 - trans_b)
        return g.model(x, (1, 10), 21)

    return build()


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_consumes_and_produces(trans_b):
    model = _mlp_head(trans_b)
    prune_through(model, consumer="fc1", consumer_axis=trans_b)
    pruned, _ = prune_through(model, removed=[1, 3, 5, 7, 9, 11, 13, 15], producer="fc1",
                              importances=FC1_IMP, consumer="fc2", consumer_axis=1 - trans_b)  # fmt: skip
    fc1 = next(n for n in pruned.graph if n.name == "fc1")
    assert fc1.inputs[2].const_value.shape == (8,)


def test_flatten_gemm_loses_blocks_of_columns():
    # 8 channels x 8 x 8 = 512 columns; each removed channel takes its 64 columns
    prune_through(_mlp_head(1, spatial=True), consumer="fc1", consumer_channels=256)


def test_matmul_channels_last_block():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Transpose", [x], perm=[0, 2, 3, 1])
        y = g.op("MatMul", [y, g.rand("fc1.weight", (8, 12))], name="mm1")
        y = g.op("Relu", [g.op("Add", [y, g.rand("fc1.bias", (12,))])])
        y = g.op("MatMul", [y, g.rand("fc2.weight", (12, 8))], name="mm2")
        return g.op("Transpose", [y], perm=[0, 3, 1, 2]), 8

    model = sandwich(middle)
    prune_through(model, consumer="mm1", consumer_axis=0)
    imp = {"mm1": [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.55, 0.65, 0.75]}
    pruned, _ = prune_through(model, removed=[1, 3, 5, 7, 8, 9], producer="mm1", importances=imp,
                              consumer="mm2", consumer_axis=0)  # fmt: skip
    add = next(n for n in pruned.graph if n.op_type == "Add")
    assert add.inputs[1].const_value.shape == (6,)


def test_matmul_passes_row_axes_through():
    """Channels on axis 1 of A [1, 8, 8, 8] pass through a MatMul on the last axis."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("MatMul", [x, g.rand("mm.weight", (8, 5))], name="mm"), 8

    pruned, report = prune_through(sandwich(middle))
    mm = next(n for n in pruned.graph if n.name == "mm")
    assert mm.inputs[1].const_value.shape == (8, 5) and "mm" not in report.removed_channels


def test_gemm_barrier_weight_not_constant():
    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        w = g.op("RandomNormal", [], name="w_random", shape=[8, 10])
        return g.model(g.op("Gemm", [x, w], name="fc1"), (1, 10), 21)

    assert_barrier(build(), "Gemm", "fc1", r"B input is not a constant 2-D weight")


def test_gemm_barrier_bias_not_constant():
    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        c = g.op("RandomNormal", [], name="c_random", shape=[10])
        return g.model(g.op("Gemm", [x, g.rand("w", (8, 10)), c], name="fc1"), (1, 10), 21)

    assert_barrier(build(), "Gemm", "fc1", r"C input is not a constant")


def test_gemm_barrier_channels_not_on_reduction_axis():
    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        # transA: A [1, 8] is read as [8, 1]; its channels (axis 1) are the M rows, not K
        return g.model(g.op("Gemm", [x, g.rand("w", (1, 10))], name="fc1", transA=1), (8, 10), 21)

    assert_barrier(build(), "Gemm", "fc1", r"channels of A are not on its reduction axis")


def test_matmul_barrier_two_activations():
    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        xt = g.op("Transpose", [x], perm=[1, 0])
        return g.model(g.op("MatMul", [xt, x], name="outer"), (8, 8), 21)

    assert_barrier(build(), "MatMul", "outer", r"MatMul between activations carries channels on two different output axes")


def test_matmul_barrier_rows_do_not_match():
    """Malformed on purpose: A's 8 channels against a weight with 5 rows."""

    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        return g.model(g.op("MatMul", [x, g.rand("w", (5, 10))], name="mm"), (1, 10), 21)

    assert_barrier(build(), "MatMul", "mm", r"channels of A do not match B's rows")


def test_matmul_barrier_vector_input():
    def build():
        g = GraphBuilder()
        x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
        v = g.op("Reshape", [x, const(g, "flat", np.array([8], np.int64))], name="to_vector")
        return g.model(g.op("MatMul", [v, g.rand("w", (8, 10))], name="mm"), (10,), 21)

    assert_barrier(build(), "MatMul", "mm", r"unknown or vector rank")
