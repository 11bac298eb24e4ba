"""Ops that move the channel axis or leave it whole.

Cases:
1. Transpose: the channel axis moves with the permutation.
2. Squeeze/Unsqueeze: the channel axis shifts; squeezing it is a barrier.
3. Resize/Upsample/Expand/Tile pass channels through; a `sizes`/shape entry for the channel
   axis is rewritten, a channel scale or repeat other than 1 is a barrier.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.context import AnalysisContext, EditOp, RewriteContext
from onnxrecede.engine.registry import Rule, register
from onnxrecede.engine.rules._util import ints_from_attr_or_input, normalize_axis, tracked_input


@register("Transpose")
class TransposeRule(Rule):
    behaviour = "pass through; the channel axis moves with the permutation"

    def param_source(
        self, node: ir.Node, ops: tuple[EditOp, ...], rank: int
    ) -> tuple[EditOp, ...] | None:
        perm = list(node.attributes.get_ints("perm", list(range(rank))[::-1]) or [])
        return tuple((perm[axis], op, idx) for axis, op, idx in ops)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        perm = [int(p) for p in node.attributes.get_ints("perm", list(range(rank))[::-1])]
        ctx.set_view(node.outputs[0], perm.index(xv.axis), xv.labels)
        return None


@register("Squeeze", "Unsqueeze")
class SqueezeRule(Rule):
    behaviour = "pass through; the channel axis shifts (squeezing it is a barrier)"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        x = node.inputs[0]
        xv, dims = ctx.view(x), ctx.dims(x)
        if xv is None:
            return None
        if dims is None:
            return "the rank of its input is unknown"
        axes, known = ints_from_attr_or_input(ctx, node, "axes", 1)
        if not known:
            return "its axes are computed at run time"
        if node.op_type == "Squeeze":
            if axes is None:
                axes = [i for i, d in enumerate(dims) if d == 1]
                if any(d is None for d in dims):
                    return "it squeezes unknown axes"
            axes = [normalize_axis(a, len(dims)) for a in axes]
            if xv.axis in axes:
                return "it squeezes the channel axis"
            axis = xv.axis - sum(a < xv.axis for a in axes)
        else:
            out_rank = len(dims) + len(axes or [])
            inserted = {normalize_axis(a, out_rank) for a in axes or []}
            kept = [i for i in range(out_rank) if i not in inserted]
            axis = kept[xv.axis]
        ctx.set_view(node.outputs[0], axis, xv.labels)
        return None


@register("Resize", "Upsample")
class ResizeRule(Rule):
    behaviour = (
        "pass through; a `sizes` entry for the channel axis is rewritten (scaling it is a barrier)"
    )

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv = ctx.view(node.inputs[0])
        if xv is None:
            return None
        scales_index = 1 if node.op_type == "Upsample" else 2
        scales = None
        if node.op_type == "Upsample" and "scales" in node.attributes:
            scales = np.asarray(node.attributes["scales"].as_floats())
        elif len(node.inputs) > scales_index and node.inputs[scales_index] is not None:
            scales = ctx.constant(node.inputs[scales_index])
            if scales is None:
                return "its scales are computed at run time"
        if scales is not None and scales.size and scales.ravel()[xv.axis] != 1:
            return "it rescales the channel axis"
        ctx.set_view(node.outputs[0], xv.axis, xv.labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        x = node.inputs[0]
        xv = ctx.view(x)
        if node.op_type != "Resize" or xv is None or not ctx.changed(x):
            return
        if len(node.inputs) > 3 and node.inputs[3] is not None:
            sizes = ctx.constant(node.inputs[3])
            if sizes is not None and "axes" not in node.attributes:
                new = sizes.copy()
                new[xv.axis] = len(ctx.keep_positions(x))  # type: ignore[arg-type]
                ctx.set_constant_input(node, 3, new)


@register("Expand", "Tile")
class ExpandRule(Rule):
    behaviour = "pass through; a shape entry for the channel axis is rewritten (repeating or broadcasting it is a barrier)"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        x, out = node.inputs[0], node.outputs[0]
        xv, rin, rout = ctx.view(x), ctx.rank(x), ctx.rank(out)
        if xv is None:
            return None
        if rin is None or rout is None:
            return "the rank of its input or output is unknown"
        axis = xv.axis + rout - rin
        arr = ctx.constant(node.inputs[1])
        if node.op_type == "Tile" and (arr is None or int(arr.ravel()[xv.axis]) != 1):
            return "it repeats the channel axis"
        dims = ctx.dims(out)
        if dims is not None and dims[axis] is not None and dims[axis] != len(xv):
            return "it broadcasts the channel axis"
        ctx.set_view(out, axis, xv.labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        ov = ctx.view(out)
        if node.op_type != "Expand" or ov is None or not ctx.changed(x):
            return
        shape = ctx.constant(node.inputs[1])
        if shape is not None:
            pos = ov.axis - (ctx.rank(out) or 0) + len(shape)
            if 0 <= pos < len(shape) and shape[pos] > 1:
                new = shape.copy()
                new[pos] = len(ctx.keep_positions(out))  # type: ignore[arg-type]
                ctx.set_constant_input(node, 1, new)
