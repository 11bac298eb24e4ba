"""Normalisations.

Cases:
1. BatchNormalization and InstanceNormalization act per channel: channels pass through, and
   scale, bias (and BN's running mean and variance) are sliced along axis 0.
2. LayerNormalization passes channels through when it normalises only axes after the channel
   axis; across the channel axis it is a barrier.
3. GroupNormalization and LRN mix channels: barriers.
4. LpNormalization and the Softmax family are barriers along the channel axis and pass channels
   through along any other axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.context import AnalysisContext, RewriteContext
from onnxrecede.engine.registry import (
    Axes,
    Dims,
    Rule,
    ViewOf,
    const_dims,
    labels_of,
    output_axes,
    register,
)
from onnxrecede.engine.rules._util import normalize_axis, opset, tracked_input


@register("BatchNormalization", "InstanceNormalization")
class PerChannelNormRule(Rule):
    behaviour = "per channel: pass through, slice parameters"
    weight_input = 1

    def keeps_shape(self, op_type: str) -> bool:
        return True

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """Scale, shift and statistics: kept channels of the data input."""
        if index is None:
            return output_axes(node, view_of)
        return labels_of(view_of(node.inputs[0]))

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        """BatchNormalization of a constant: (v - mean) / sqrt(var + eps) * scale + bias."""
        params = [const.value(v) for v in node.inputs[1:5]]
        if node.op_type != "BatchNormalization" or any(p is None for p in params):
            return None
        scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
        attr = node.attributes.get("epsilon")
        eps = 1e-5 if attr is None else float(attr.as_float())
        return (values - mean) / np.sqrt(var + eps) * scale + bias

    def output_channels(self, node: ir.Node) -> int | None:
        w = const_dims(node, 1)
        return None if not w else w[0]

    def check(self, node: ir.Node, dims: Sequence[Dims]) -> list[str]:
        if not dims[0]:
            return []
        c, problems = dims[0][1], []
        for i, p in enumerate(dims[1:], start=1):
            if p and isinstance(c, int) and isinstance(p[0], int) and p[0] != c:
                problems.append(
                    f"{node.op_type} '{node.name}': parameter {i} has {p[0]} entries for {c} channels"
                )
        return problems

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (1, 2)  # scale and shift; never the running statistics

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv = ctx.view(node.inputs[0])
        if xv is None:
            return None
        if len(node.outputs) > 1 and any(o.uses() for o in node.outputs[1:]):
            return "training-mode outputs (running statistics) are used"
        if xv.axis != 1:
            return "its input's channel axis is not axis 1"
        for p in node.inputs[1:]:
            if p is not None and not ctx.is_constant(p):
                return "its parameters are not constants"
        ctx.set_view(node.outputs[0], xv.axis, xv.labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        x = node.inputs[0]
        keep = ctx.keep_positions(x)
        if keep is None or not ctx.changed(x):
            return
        for i in range(1, len(node.inputs)):
            if node.inputs[i] is not None:
                ctx.slice_param(node, i, {0: keep})


@register("LayerNormalization")
class LayerNormRule(Rule):
    behaviour = "pass through when normalising axes after the channel axis; across it, barrier"

    def keeps_shape(self, op_type: str) -> bool:
        return True

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (1, 2)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        start = normalize_axis(node.attributes.get_int("axis", -1), rank)
        if xv.axis >= start:
            return "LayerNormalization normalises across the channel axis"
        ctx.set_view(node.outputs[0], xv.axis, xv.labels)
        return None


@register("GroupNormalization", "LRN")
class ChannelMixingNormRule(Rule):
    behaviour = "barrier (mix channels)"

    def keeps_shape(self, op_type: str) -> bool:
        return True

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (1, 2) if op_type == "GroupNormalization" else ()

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        if ctx.view(node.inputs[0]) is None:
            return None
        return f"{node.op_type} mixes channels"


@register("LpNormalization", "Softmax", "LogSoftmax", "Hardmax")
class AxisNormRule(Rule):
    behaviour = "pass through along another axis; along the channel axis, barrier"

    def keeps_shape(self, op_type: str) -> bool:
        return True

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        default = -1 if node.op_type == "LpNormalization" or opset(node) >= 13 else 1
        axis = normalize_axis(node.attributes.get_int("axis", default), rank)
        coerced = node.op_type != "LpNormalization" and opset(node) < 13
        if axis == xv.axis or (coerced and xv.axis >= axis):
            return f"{node.op_type} normalises across the channel axis"
        ctx.set_view(node.outputs[0], xv.axis, xv.labels)
        return None
