"""What the registry tells the rest of the package: importances keys (weight input, output
channel count) and which producers reports list."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from onnxrecede.api import REPORTED_PRODUCERS
from onnxrecede.engine import registry
from onnxrecede.importance.file_format import CHANNEL_OPS, channel_count


def _node(op: str, weight_shape: tuple[int, ...], **attrs: int) -> ir.Node:
    w = numpy_helper.from_array(np.zeros(weight_shape, np.float32), "w")
    node = helper.make_node(op, ["x", "w"], ["y"], name="n", **attrs)
    graph = helper.make_graph([node], "g", [], [], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    return next(iter(ir.serde.deserialize_model(model).graph))


@pytest.mark.parametrize(
    ("op", "shape", "attrs", "channels"),
    [
        ("Conv", (6, 3, 3, 3), {}, 6),
        ("ConvTranspose", (3, 4, 2, 2), {"group": 3}, 12),
        ("Gemm", (8, 5), {}, 5),
        ("Gemm", (8, 5), {"transB": 1}, 8),
        ("MatMul", (8, 5), {}, 5),
        ("BatchNormalization", (7,), {}, 7),
        ("InstanceNormalization", (7,), {}, 7),
        ("Relu", (7,), {}, None),
    ],
)
def test_output_channels(op, shape, attrs, channels):
    assert channel_count(_node(op, shape, **attrs)) == channels


def test_channel_ops_and_reported_producers():
    assert CHANNEL_OPS == registry.weight_inputs() == {
        "Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1,
        "BatchNormalization": 1, "InstanceNormalization": 1,
    }  # fmt: skip
    assert set(REPORTED_PRODUCERS) == {"Conv", "ConvTranspose", "Gemm", "MatMul"}


# ---------------------------------------------------------------- shape, constant and weight hooks

#: the ops whose first output has the first input's shape (the table shapes.py used to hold)
SAME_SHAPE = {
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "LpNormalization", "LRN", "Softmax", "LogSoftmax", "Hardmax", "PRelu",
}  # fmt: skip


def test_keeps_shape_is_the_unary_ops_and_the_norms() -> None:
    from onnxrecede.engine.rules.elementwise import UNARY_OPS

    found = {op for (d, op), rule in registry.rules().items() if not d and rule.keeps_shape(op)}
    assert found == set(UNARY_OPS) | SAME_SHAPE


def _rule(op: str, shape: tuple[int, ...] = (2, 3), **attrs: object) -> tuple[object, ir.Node]:
    node = _node(op, shape, **attrs)  # type: ignore[arg-type]
    rule = registry.rule_for(node)
    assert rule is not None
    return rule, node


def test_param_source_moves_a_slice_through_elementwise_ops_and_transpose() -> None:
    ops = ((0, "keep", (0, 2)), (1, "zero", (1,)))
    relu, node = _rule("Relu")
    assert relu.param_source(node, ops, 2) == ops  # type: ignore[attr-defined]
    dropout, node = _rule("Dropout")
    assert dropout.param_source(node, ops, 2) is None  # type: ignore[attr-defined]
    transpose, node = _rule("Transpose", perm=[2, 0, 1])  # type: ignore[arg-type]
    assert transpose.param_source(node, ops, 3) == (  # type: ignore[attr-defined]
        (2, "keep", (0, 2)), (0, "zero", (1,)),
    )
    reverse, node = _rule("Transpose")
    assert reverse.param_source(node, ops, 3) == (  # type: ignore[attr-defined]
        (2, "keep", (0, 2)), (1, "zero", (1,)),
    )
    conv, node = _rule("Conv", (4, 3, 1, 1))
    assert conv.param_source(node, ops, 4) is None  # type: ignore[attr-defined]


def test_weight_rows_one_row_per_output_channel() -> None:
    w = np.arange(3 * 4 * 2 * 2, dtype=np.float64).reshape(3, 4, 2, 2)
    conv, node = _rule("Conv", w.shape)
    assert np.array_equal(conv.weight_rows(node, w), w.reshape(3, 16))  # type: ignore[attr-defined]
    # ConvTranspose [Cin, Cout/group, k]: output channel g*cout_g + j reads W[g*cin_g:(g+1)*cin_g, j]
    tconv, node = _rule("ConvTranspose", w.shape, group=1)  # type: ignore[arg-type]
    rows = tconv.weight_rows(node, w)  # type: ignore[attr-defined]
    assert rows.shape == (4, 12) and np.array_equal(rows[1], w[:, 1].reshape(-1))
    w2 = np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2)
    grouped, node = _rule("ConvTranspose", w2.shape, group=2)  # type: ignore[arg-type]
    rows = grouped.weight_rows(node, w2)  # type: ignore[attr-defined]
    assert rows.shape == (6, 4) and np.array_equal(rows[4], w2[2:4, 1].reshape(-1))
    g = np.arange(10, dtype=np.float64).reshape(2, 5)
    gemm, node = _rule("Gemm", g.shape)
    assert np.array_equal(gemm.weight_rows(node, g), g.T)  # type: ignore[attr-defined]
    gemm_t, node = _rule("Gemm", g.shape, transB=1)  # type: ignore[arg-type]
    assert np.array_equal(gemm_t.weight_rows(node, g), g)  # type: ignore[attr-defined]
    matmul, node = _rule("MatMul", g.shape)
    assert np.array_equal(matmul.weight_rows(node, g), g.T)  # type: ignore[attr-defined]
    bn, node = _rule("BatchNormalization", (5,))
    assert bn.weight_rows(node, np.ones(5)) is None  # type: ignore[attr-defined]
