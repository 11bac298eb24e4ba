"""Conv and ConvTranspose.

Cases:
1. group == 1: the weight consumes the input channels (Conv W axis 1, ConvTranspose W axis 0)
   and produces fresh output channels (Conv W axis 0, ConvTranspose W axis 1, bias axis 0).
2. Depthwise (group == input channels, multiplier m): output channel j is computed from input
   channel j // m alone, so the output labels repeat the input labels m times; ``group`` is
   rewritten to the kept input count.
3. Grouped (1 < group < input channels): position k of every group is coupled into one channel,
   on the input side and on the output side, so that every group keeps the same number of
   channels and ``group`` stays as it is. Uneven groups are a barrier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

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
from onnxrecede.engine.spaces import PRODUCER


@dataclass(frozen=True)
class ConvKind:
    """Which case of the module docstring analysis found: plain, depthwise or grouped."""

    kind: str


PLAIN, DEPTHWISE, GROUPED = ConvKind("plain"), ConvKind("depthwise"), ConvKind("grouped")


def _bias_ok(ctx: AnalysisContext, node: ir.Node) -> bool:
    return len(node.inputs) < 3 or node.inputs[2] is None or ctx.is_constant(node.inputs[2])


@register("Conv", "ConvTranspose")
class ConvRule(Rule):
    behaviour = "produce channels; consume input channels; depthwise (group = C, any multiplier) couples input to output and rewrites `group`; grouped convs are pruned evenly per group"
    weight_input = 1
    reports_channels = True

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """MACs and weight: kept outputs x kept inputs (outputs only when depthwise, whose
        ``group`` follows the channels); the bias: kept outputs."""
        out = output_axes(node, view_of)
        if index == 2 or (index is None or index == 1) and _is_depthwise(node):
            return out
        return out + labels_of(view_of(node.inputs[0])) if index in (None, 1) else ()

    def weight_rows(self, node: ir.Node, weight: np.ndarray) -> np.ndarray | None:
        if weight.ndim < 2:
            return None
        if node.op_type == "Conv":  # [Cout, Cin/group, k...]
            return weight.reshape(weight.shape[0], -1)
        group = node.attributes.get_int("group", 1)  # ConvTranspose: [Cin, Cout/group, k...]
        cin, cout_g = weight.shape[0], weight.shape[1]
        if cin % group:
            return None
        grouped = weight.reshape(group, cin // group, cout_g, -1).transpose(0, 2, 1, 3)
        return grouped.reshape(group * cout_g, -1)

    def output_channels(self, node: ir.Node) -> int | None:
        w = const_dims(node, 1)
        if w is None or len(w) < 2:
            return None
        return w[0] if node.op_type == "Conv" else w[1] * node.attributes.get_int("group", 1)

    def check(self, node: ir.Node, dims: Sequence[Dims]) -> list[str]:
        x, w = dims[0], dims[1]
        if not x or not w:
            return []
        where, problems = f"{node.op_type} '{node.name}'", []
        group = node.attributes.get_int("group", 1)
        cin = w[1] * group if node.op_type == "Conv" else w[0]
        cout = w[0] if node.op_type == "Conv" else w[1] * group
        if isinstance(x[1], int) and x[1] != cin:
            problems.append(f"{where}: input has {x[1]} channels, weight expects {cin}")
        bias = dims[2] if len(dims) > 2 else None
        if bias and isinstance(bias[0], int) and bias[0] != cout:
            problems.append(f"{where}: bias has {bias[0]} entries for {cout} output channels")
        return problems

    def macs(self, node: ir.Node, shape_of: ShapeOf) -> int | None:
        weight = shape_of(1)
        if node.op_type == "Conv":  # N * Cout * prod(out spatial) * (Cin/group) * prod(kernel)
            out = shape_of(0, output=True)
            return None if weight is None or out is None else math.prod(out) * math.prod(weight[1:])
        x = shape_of(0)  # ConvTranspose: N * Cin * prod(in spatial) * (Cout/group) * prod(kernel)
        return None if x is None or weight is None else math.prod(x) * math.prod(weight[1:])

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        return (1, 2)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        transpose = node.op_type == "ConvTranspose"
        x, w, out = node.inputs[0], node.inputs[1], node.outputs[0]
        wd = ctx.dims(w)
        if not ctx.is_constant(w) or wd is None or any(d is None for d in wd):
            return "its weight is not a constant initializer"
        if not _bias_ok(ctx, node):
            return "its bias is computed at run time from non-constant inputs"
        group = node.attributes.get_int("group", 1)
        w_in_axis, w_out_axis = (0, 1) if transpose else (1, 0)
        cin = int(wd[w_in_axis] or 0) * (1 if transpose else group)
        cout = int(wd[w_out_axis] or 0) * (group if transpose else 1)
        xv = ctx.view(x)
        if xv is not None and (xv.axis != 1 or len(xv) != cin):
            return (
                f"its input channel axis ({xv.axis}, {len(xv)} channels) does not match the weight"
            )
        if group == 1:
            if xv is not None:
                ctx.consume(node, 1, w_in_axis, xv.labels)
            ctx.produce(node, out, 1, cout)
            ctx.decide(node, PLAIN)
            return None
        if group == cin and cout % group == 0:
            if xv is None:
                return "depthwise convolution whose input channels are not tracked"
            view = ctx.set_view(out, 1, np.repeat(xv.labels, cout // group))
            ctx.channel_outputs[node] = view
            ctx.decide(node, DEPTHWISE)
            return None
        if cin % group or cout % group:
            return f"grouped convolution (group={group}) with uneven groups"
        # 4. Grouped: position k of every group is one channel, so groups stay equal in size.
        if xv is not None:
            rows = xv.labels.reshape(group, cin // group)
            for r in rows[1:]:
                ctx.space.union_labels(rows[0], r)
            ctx.consume(node, 1, w_in_axis, rows[0] if not transpose else xv.labels)
        atom = ctx.space.new_atom(cout // group, PRODUCER, node, out)
        ctx.channel_outputs[node] = ctx.set_view(out, 1, np.tile(atom, group))
        ctx.decide(node, GROUPED)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        transpose = node.op_type == "ConvTranspose"
        x, out = node.inputs[0], node.outputs[0]
        kind = ctx.decision(node, ConvKind)
        if kind is None or not (ctx.changed(x) or ctx.changed(out)):
            return
        keep_in, keep_out = ctx.keep_positions(x), ctx.keep_positions(out)
        w_in_axis, w_out_axis = (0, 1) if transpose else (1, 0)
        group = node.attributes.get_int("group", 1)
        slices: dict[int, np.ndarray] = {}
        if kind == PLAIN:
            if keep_in is not None and ctx.changed(x):
                slices[w_in_axis] = keep_in
            if keep_out is not None and ctx.changed(out):
                slices[w_out_axis] = keep_out
        elif kind == DEPTHWISE:  # the weight has one input channel per group
            assert keep_in is not None and keep_out is not None
            slices[0] = keep_in if transpose else keep_out
            node.attributes["group"] = ir.AttrInt64("group", int(len(keep_in)))
        else:  # grouped: full axes are sliced as they are, in-group axes by the first group
            if keep_in is not None and ctx.changed(x):
                slices[w_in_axis] = keep_in if transpose else _first_group(keep_in, x, ctx, group)
            if keep_out is not None and ctx.changed(out):
                slices[w_out_axis] = (
                    _first_group(keep_out, out, ctx, group) if transpose else keep_out
                )
        ctx.slice_param(node, 1, slices)
        has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
        if has_bias and keep_out is not None and ctx.changed(out):
            ctx.slice_param(node, 2, {0: keep_out})


def _first_group(
    keep: np.ndarray, value: ir.Value | None, ctx: RewriteContext, group: int
) -> np.ndarray:
    """Kept positions inside one group (all groups keep the same ones)."""
    view = ctx.view(value)
    assert view is not None
    per_group = len(view) // group
    return keep[keep < per_group]


def _is_depthwise(node: ir.Node) -> bool:
    group = node.attributes.get_int("group", 1)
    w = const_dims(node, 1)
    if group <= 1 or w is None:
        return False
    cin = w[0] if node.op_type == "ConvTranspose" else w[1] * group
    return group == cin
