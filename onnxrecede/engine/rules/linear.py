"""Gemm and MatMul with a constant weight.

Cases:
1. Gemm: A's reduction axis (axis 1, or 0 with transA) consumes channels through B's K axis;
   the output's axis 1 holds fresh channels (B's N axis, and C's last axis when it is N long).
2. MatMul with a constant 2-D B:
   a. channels on A's last axis are consumed by B's rows; the output's last axis holds fresh
      channels (B's columns). This covers channels-last blocks and Flatten -> MatMul heads;
   b. channels on any other axis of A (batch or row axes) pass through to the output.
3. MatMul between two activations, or with a constant batched B, is a barrier for its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import known_dims
from onnxrecede.engine.context import AnalysisContext, RewriteContext
from onnxrecede.engine.registry import (
    Axes,
    Dims,
    Rule,
    ShapeOf,
    ViewOf,
    const_dims,
    labels_of,
    output_axes,
    register,
)


@register("Gemm")
class GemmRule(Rule):
    behaviour = "consume and produce channels (constant B)"
    weight_input = 1
    reports_channels = True

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """MACs and B: kept outputs x kept inputs (when the input's channel axis is the
        contracted one); C: kept outputs."""
        out = output_axes(node, view_of)
        if index == 2:
            return out
        x = view_of(node.inputs[0])
        k_axis = 0 if node.attributes.get_int("transA", 0) else 1
        contracted = labels_of(x) if x is not None and x.axis == k_axis else ()
        return out + contracted if index in (None, 1) else ()

    def weight_rows(self, node: ir.Node, weight: np.ndarray) -> np.ndarray | None:
        if weight.ndim != 2:
            return None
        return weight if node.attributes.get_int("transB", 0) else weight.T

    def output_channels(self, node: ir.Node) -> int | None:
        w = const_dims(node, 1)
        if w is None or len(w) != 2:
            return None
        return w[0] if node.attributes.get_int("transB", 0) else w[1]

    def check(self, node: ir.Node, dims: Sequence[Dims]) -> list[str]:
        a, b = dims[0], dims[1]
        if not a or not b:
            return []
        k_a = a[0 if node.attributes.get_int("transA", 0) else 1]
        k_b = b[1 if node.attributes.get_int("transB", 0) else 0]
        if isinstance(k_a, int) and k_a != k_b:
            return [f"{node.op_type} '{node.name}': A has inner dimension {k_a}, B has {k_b}"]
        return []

    def macs(self, node: ir.Node, shape_of: ShapeOf) -> int | None:
        a, out = shape_of(0), shape_of(0, output=True)
        if a is None or out is None or len(a) != 2:
            return None
        return math.prod(out) * (a[0] if node.attributes.get_int("transA", 0) else a[1])

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (0, 1, 2)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        a, b = node.inputs[0], node.inputs[1]
        bd = ctx.dims(b)
        if not ctx.is_constant(b) or bd is None or len(bd) != 2:
            return "its B input is not a constant 2-D weight"
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is not None and not ctx.is_constant(c):
            return "its C input is not a constant"
        trans_b = node.attributes.get_int("transB", 0)
        k, n = (bd[1], bd[0]) if trans_b else (bd[0], bd[1])
        av = ctx.view(a)
        if av is not None:
            k_axis = 0 if node.attributes.get_int("transA", 0) else 1
            if av.axis != k_axis or len(av) != k:
                return "the channels of A are not on its reduction axis"
            ctx.consume(node, 1, 1 if trans_b else 0, av.labels)
        assert n is not None
        ctx.produce(node, node.outputs[0], 1, int(n))
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        a, out = node.inputs[0], node.outputs[0]
        trans_b = node.attributes.get_int("transB", 0)
        k_axis, n_axis = (1, 0) if trans_b else (0, 1)
        slices = {}
        keep_out = ctx.keep_positions(out)
        if ctx.changed(a):
            slices[k_axis] = ctx.keep_positions(a)
        if ctx.changed(out):
            slices[n_axis] = keep_out
        ctx.slice_param(node, 1, slices)  # type: ignore[arg-type]
        c = node.inputs[2] if len(node.inputs) > 2 else None
        bias = ctx.constant(c)
        n_out = len(ctx.view(out) or ())
        if (
            bias is not None
            and keep_out is not None
            and ctx.changed(out)
            and bias.ndim >= 1
            and bias.shape[-1] == n_out > 1
        ):
            ctx.slice_param(node, 2, {bias.ndim - 1: keep_out})


@dataclass(frozen=True)
class MatMulRole:
    """Case 2a (A's last axis is consumed, B's columns are produced) or 2b (rows pass)."""

    consumes: bool
    produces: bool


@register("MatMul")
class MatMulRule(Rule):
    behaviour = "with a constant 2-D weight: consume and produce channels on the last axis, pass batch/row axes through; between activations, barrier"
    weight_input = 1
    reports_channels = True

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """MACs and the weight: kept outputs x kept inputs (when A's channel axis is its last,
        the contracted one)."""
        out = output_axes(node, view_of)
        if index not in (None, 1):
            return ()
        x, rank = view_of(node.inputs[0]), len(known_dims(node.inputs[0]) or ())
        return out + (labels_of(x) if x is not None and rank and x.axis == rank - 1 else ())

    def weight_rows(self, node: ir.Node, weight: np.ndarray) -> np.ndarray | None:
        if weight.ndim < 2:
            return None
        return np.moveaxis(weight, -1, 0).reshape(weight.shape[-1], -1)

    def output_channels(self, node: ir.Node) -> int | None:
        w = const_dims(node, 1)
        return None if not w else w[-1]

    def check(self, node: ir.Node, dims: Sequence[Dims]) -> list[str]:
        a, b = dims[0], dims[1]
        if not a or not b or len(b) < 2:
            return []
        k_a, k_b = a[-1], b[-2]
        if isinstance(k_a, int) and isinstance(k_b, int) and k_a != k_b:
            return [f"{node.op_type} '{node.name}': A has inner dimension {k_a}, B has {k_b}"]
        return []

    def macs(self, node: ir.Node, shape_of: ShapeOf) -> int | None:
        # the output holds batch * M * N elements (1-D operands drop M or N); each costs K MACs
        a, out = shape_of(0), shape_of(0, output=True)
        return None if a is None or out is None or not a else math.prod(out) * a[-1]

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (0, 1)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
        av, bv = ctx.view(a), ctx.view(b)
        bd, ra, rout = ctx.dims(b), ctx.rank(a), ctx.rank(out)
        if not ctx.is_constant(b) or bd is None or len(bd) != 2 or bd[1] is None:
            if av is None and bv is None:
                return None
            return "MatMul between two activations (or with a batched weight) is not pruned"
        if ra is None or ra < 2:
            return "its A input has unknown or vector rank"
        rout = rout if rout is not None else ra
        if av is None or av.axis == ra - 1:
            if av is not None:
                if len(av) != bd[0]:
                    return "the channels of A do not match B's rows"
                ctx.consume(node, 1, 0, av.labels)
            ctx.produce(node, out, rout - 1, int(bd[1]))
            ctx.decide(node, MatMulRole(consumes=av is not None, produces=True))
            return None
        ctx.set_view(out, av.axis + rout - ra, av.labels)
        ctx.decide(node, MatMulRole(consumes=False, produces=False))
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        a, out = node.inputs[0], node.outputs[0]
        role = ctx.decision(node, MatMulRole)
        if role is None:
            return
        slices = {}
        if role.consumes and ctx.changed(a):
            slices[0] = ctx.keep_positions(a)
        if role.produces and ctx.changed(out):
            slices[1] = ctx.keep_positions(out)
        ctx.slice_param(node, 1, slices)  # type: ignore[arg-type]
