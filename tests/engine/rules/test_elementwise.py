"""Rules in onnxrecede/engine/rules/elementwise.py: unary ops, shape readers, broadcasting ops."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from onnxrecede.engine.rules.elementwise import BROADCAST_OPS, UNARY_OPS
from tests.engine.rules.helpers import (
    assert_barrier,
    cast,
    const,
    per_channel,
    prune_through,
    sandwich,
)
from tests.models.handmade import GraphBuilder

F = TensorProto.FLOAT

#: ops that need a positive (or >= 1) input: they read Sigmoid(x) (+1 for Acosh)
_POSITIVE = {"Log", "Sqrt", "Asin", "Acos", "Atanh", "Reciprocal"}


def _unary(op: str):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        if op in _POSITIVE:
            return g.op(op, [g.op("Sigmoid", [x])], name="op"), 8
        if op == "Acosh":
            shifted = g.op("Add", [g.op("Sigmoid", [x]), const(g, "one", np.float32(1.5))])
            return g.op(op, [shifted], name="op"), 8
        if op in ("Not",):
            positive = g.op("Greater", [x, const(g, "zero", np.float32(0))])
            return cast(g, g.op(op, [positive], name="op"), F), 8
        if op in ("IsNaN", "IsInf"):
            return cast(g, g.op(op, [x], name="op"), F), 8
        if op == "BitwiseNot":
            return cast(g, g.op(op, [cast(g, x, TensorProto.INT32)], name="op"), F), 8
        if op == "Cast":
            return cast(g, cast(g, x, TensorProto.DOUBLE, name="op"), F), 8
        if op == "CastLike":
            return g.op(op, [x, const(g, "like", np.float32(0))], name="op"), 8
        if op in ("Swish",):
            return g.op(op, [x], name="op", alpha=1.0), 8
        return g.op(op, [x], name="op"), 8

    return middle


#: ops ONNX Runtime 1.31 has no CPU kernel for (at opset 21 or at all): structural checks only
NO_ORT_KERNEL = {"Swish"}


@pytest.mark.parametrize("op", UNARY_OPS)
def test_unary_op_passes_channels_through(op):
    opset = 24 if op == "Swish" else 21
    prune_through(sandwich(_unary(op), opset=opset), numeric=op not in NO_ORT_KERNEL)


def test_unary_op_with_several_outputs_passes_channels_to_each():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        out, mask = g.multi("Dropout", [x], 2, name="op")
        return g.op("Add", [out, cast(g, mask, F)]), 8

    prune_through(sandwich(middle))


@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_shape_readers_do_not_block(op):
    """A Shape/Size of a pruned tensor reads no channels (here it feeds a zero-valued Add)."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Relu", [x])
        size = cast(g, g.op(op, [y], name="op"), F)
        zero = g.op("Mul", [g.op("ReduceSum", [size], keepdims=1), const(g, "z", np.float32(0))])
        return g.op("Add", [y, zero]), 8

    prune_through(sandwich(middle))


# ------------------------------------------------------------------------- broadcasting ops


def _broadcast(op: str):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        c = per_channel(g, "param")
        if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean"):
            return g.op(op, [x, c], name="op"), 8
        if op == "Pow":
            return g.op(
                op, [x, const(g, "exp", np.full((1, 8, 1, 1), 2.0, np.float32))], name="op"
            ), 8
        if op == "PRelu":
            return g.op(op, [x, g.rand("slope", (8, 1, 1), 0.05, 0.5)], name="op"), 8
        if op == "Mod":
            return g.op(op, [x, c], name="op", fmod=1), 8
        if op == "Where":
            cond = g.op("Greater", [x, const(g, "zero", np.float32(0))])
            return g.op(op, [cond, x, c], name="op"), 8
        if op in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"):
            return cast(g, g.op(op, [x, c], name="op"), F), 8
        if op in ("And", "Or", "Xor"):
            a = g.op("Greater", [x, const(g, "zero", np.float32(0))])
            b = g.op("Less", [x, c])
            return cast(g, g.op(op, [a, b], name="op"), F), 8
        if op.startswith("Bitwise"):
            ints = cast(g, g.op("Mul", [x, const(g, "ten", np.float32(10))]), TensorProto.INT32)
            mask = const(g, "mask", np.arange(8, dtype=np.int32).reshape(1, 8, 1, 1))
            return cast(g, g.op(op, [ints, mask], name="op"), F), 8
        if op == "BitShift":
            ints = cast(g, g.op("Abs", [g.op("Mul", [x, const(g, "ten", np.float32(10))])]),
                        TensorProto.UINT32)  # fmt: skip
            shift = const(g, "shift", (np.arange(8, dtype=np.uint32) % 3).reshape(1, 8, 1, 1))
            return cast(g, g.op(op, [ints, shift], name="op", direction="RIGHT"), F), 8
        raise AssertionError(op)

    return middle


@pytest.mark.parametrize("op", BROADCAST_OPS)
def test_broadcast_op_slices_its_per_channel_constant(op):
    pruned, _ = prune_through(sandwich(_broadcast(op)))
    node = next(n for n in pruned.graph if n.name == "op")
    params = [
        v.const_value.numpy() for v in node.inputs if v is not None and v.const_value is not None
    ]
    per_channel_params = [p for p in params if p.size > 1]
    assert all(p.shape[-3] == 4 for p in per_channel_params), [p.shape for p in params]
    assert per_channel_params or op in ("And", "Or", "Xor")


@pytest.mark.parametrize("op", ["Add", "Sum", "Max", "Mean"])
def test_broadcast_op_couples_activations(op):
    """conv_a + conv_c: a residual join couples both producers into one group."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        other = g.conv("input", "conv_c", 3, 8)
        return g.op(op, [x, other], name="op"), 8

    _, report = prune_through(sandwich(middle))
    assert report.removed_channels["conv_c"] == [1, 3, 5, 7]


def test_scalar_and_broadcast_dim_constants_stay():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Mul", [x, const(g, "scalar", np.float32(2))], name="op")
        return g.op("Add", [y, g.rand("bcast", (1, 1, 8, 8))], name="op2"), 8

    pruned, _ = prune_through(sandwich(middle))
    add = next(n for n in pruned.graph if n.name == "op2")
    assert add.inputs[1].const_value.shape == (1, 1, 8, 8)


def test_broadcast_barrier_mismatched_channel_counts():
    """Malformed on purpose (8 and 4 channels cannot broadcast): a barrier, never a guess."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Add", [x, g.conv("input", "conv_c", 3, 4)], name="op"), 8

    assert_barrier(sandwich(middle), "Add", "op", r"inputs with 4 and 8 channels are combined")


def test_broadcast_barrier_constant_of_wrong_length():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Mul", [x, g.rand("bad", (1, 5, 1, 1))], name="op"), 8

    assert_barrier(sandwich(middle), "Mul", "op", r"input 1 has 5 entries on the channel axis")


def test_broadcast_barrier_untraced_activation_input():
    """An input with channels the engine cannot follow (from an unsupported op) blocks."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        other = g.op("RandomNormalLike", [x], name="noise")
        return g.op("Add", [x, other], name="op"), 8

    assert_barrier(
        sandwich(middle), "Add", "op", r"input 1 .* has channels onnxrecede cannot trace"
    )


def test_broadcast_barrier_channels_on_different_axes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        moved = g.op("Transpose", [g.conv("input", "conv_c", 3, 8)], perm=[0, 2, 1, 3])
        return g.op("Add", [x, moved], name="op"), 8

    assert_barrier(sandwich(middle), "Add", "op", r"different axes")
