"""Pooling and reductions.

Cases:
1. Max/Average/Lp pooling and their global forms act per channel on NC... tensors: channels
   pass through. A MaxPool whose Indices output is used is a barrier (indices count channels).
2. Reduce* ops pass channels through when the channel axis is not reduced; the axis moves left
   by the number of reduced axes before it when keepdims=0. Reducing the channel axis is a
   barrier.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.context import AnalysisContext
from onnxrecede.engine.registry import Rule, register
from onnxrecede.engine.rules._util import ints_from_attr_or_input, normalize_axis, tracked_input

POOL_OPS = (
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
)  # fmt: skip

REDUCE_OPS = (
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
)  # fmt: skip


@register(*POOL_OPS)
class PoolRule(Rule):
    behaviour = "pass through (a used MaxPool Indices output is a barrier)"

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        """A constant map pools to the same constant (AveragePool's padding may not)."""
        return values if node.op_type in ("MaxPool", "GlobalAveragePool", "GlobalMaxPool") else None

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv = ctx.view(node.inputs[0])
        if xv is None:
            return None
        if xv.axis != 1:
            return "its input's channel axis is not axis 1"
        if len(node.outputs) > 1 and node.outputs[1].uses():
            return "its Indices output (which counts channels) is used"
        ctx.set_view(node.outputs[0], 1, xv.labels)
        return None


@register(*REDUCE_OPS)
class ReduceRule(Rule):
    behaviour = "pass through when reducing other axes; reducing the channel axis is a barrier"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        axes, known = ints_from_attr_or_input(ctx, node, "axes", 1)
        if not known:
            return "its axes are computed at run time"
        if not axes:
            if node.attributes.get_int("noop_with_empty_axes", 0):
                ctx.set_view(node.outputs[0], xv.axis, xv.labels)
                return None
            return f"{node.op_type} reduces every axis, the channel axis included"
        axes = [normalize_axis(a, rank) for a in axes]
        if xv.axis in axes:
            return f"{node.op_type} reduces over the channel axis"
        keepdims = node.attributes.get_int("keepdims", 1)
        axis = xv.axis if keepdims else xv.axis - sum(a < xv.axis for a in axes)
        ctx.set_view(node.outputs[0], axis, xv.labels)
        return None
