"""Flatten and Reshape.

Cases:
1. Flatten and Reshape that keep the channel axis, or merge it with the axes after it (the
   consumer then sees each channel as a block of H*W columns), pass channels through;
2. splitting the channel axis or merging it with axes before it (a channel shuffle) is a
   barrier;
3. a constant target shape is rewritten; a computed one is followed through Concat pieces.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.context import AnalysisContext, RewriteContext
from onnxrecede.engine.registry import Rule, register
from onnxrecede.engine.rules._util import normalize_axis
from onnxrecede.engine.spaces import ChannelView


def _sym_dims(ctx: AnalysisContext, value: ir.Value | None) -> list[object] | None:
    """Dims as ints, symbolic names (str), or unique objects for anonymous unknowns."""
    if value is None:
        return None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None:
        d = ctx.dims(value)
        return None if d is None else list(d)
    out: list[object] = []
    for dim in shape:
        if isinstance(dim, int):
            out.append(dim)
        else:
            name = getattr(dim, "value", None)
            out.append(f"sym:{name}" if name else object())
    return out


def _prod(dims: list[object]) -> tuple[int, tuple[str, ...]] | None:
    n, syms = 1, []
    for d in dims:
        if isinstance(d, int):
            n *= d
        elif isinstance(d, str):
            syms.append(d)
        else:
            return None
    return n, tuple(sorted(syms))


def _spread(labels: np.ndarray, stride: int, length: int) -> np.ndarray:
    """Labels of an axis made by merging the channel axis with trailing axes of size ``stride``."""
    return labels[(np.arange(length) // stride) % len(labels)]


def _reshape_target(
    ctx: AnalysisContext, xv: ChannelView, din: list[object], dout: list[object]
) -> tuple[int, int] | str:
    """(output axis, stride) for the channel axis after a reshape, or a barrier reason."""
    c = xv.axis
    before = _prod(din[:c])
    if before is None:
        return "the axes before the channel axis have unknown sizes"
    # Several output axes can start at the same offset when size-1 axes are around.
    for j in range(len(dout)):
        target = dout[j]
        if _prod(dout[:j]) != before or not isinstance(target, int) or target < len(xv):
            continue
        for k in range(c, len(din)):
            block = _prod(din[c : k + 1])
            if block is None or block[1] or block[0] > target:
                break
            if block[0] == target and _prod(dout[j + 1 :]) == _prod(din[k + 1 :]):
                return j, target // len(xv)
    return "Reshape splits the channel axis or merges it with the axes before it (e.g. a channel shuffle)"


@register("Flatten", "Reshape")
class ReshapeRule(Rule):
    behaviour = "keep the channel axis or merge it with trailing axes (consumer loses blocks of H*W columns); splitting it (channel shuffle) is a barrier"

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        return values  # the channels keep their values, whatever the layout

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        x, out = node.inputs[0], node.outputs[0]
        xv = ctx.view(x)
        if xv is None:
            return None
        din = _sym_dims(ctx, x)
        if din is None:
            return "the shape of its input is unknown"
        if node.op_type == "Flatten":
            return _flatten(ctx, node, xv, din)
        dout = _sym_dims(ctx, out)
        if dout is None:
            return "the shape of its output is unknown"
        if not ctx.is_constant(node.inputs[1]):
            reason = _check_computed_shape(ctx, node)
            if reason:
                return reason
        target = _reshape_target(ctx, xv, din, dout)
        if isinstance(target, str):
            return target
        axis, stride = target
        length = dout[axis]
        assert isinstance(length, int)
        labels = xv.labels if stride == 1 else _spread(xv.labels, stride, length)
        ctx.set_view(out, axis, labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        out = node.outputs[0]
        if node.op_type != "Reshape" or not ctx.changed(out):
            return
        view, keep = ctx.view(out), ctx.keep_positions(out)
        assert view is not None and keep is not None
        shape_value = node.inputs[1]
        shape = ctx.constant(shape_value)
        if shape is not None and shape_value is not None and _is_direct_or_folded(shape_value):
            if shape[view.axis] > 0:
                new = shape.copy()
                new[view.axis] = len(keep)
                ctx.set_constant_input(node, 1, new)
            return
        # A computed target shape: find the Concat piece that holds the channel entry.
        concat = shape_value.producer() if shape_value is not None else None
        if concat is None or concat.op_type != "Concat":
            return
        offset = 0
        for i, piece in enumerate(concat.inputs):
            arr = ctx.constant(piece)
            n = len(arr) if arr is not None else (ctx.dims(piece) or (1,))[0]
            assert n is not None
            if offset <= view.axis < offset + n:
                if arr is not None and arr[view.axis - offset] > 0:
                    new = arr.copy()
                    new[view.axis - offset] = len(keep)
                    ctx.set_constant_input(concat, i, new)
                return
            offset += n


def _is_direct_or_folded(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is None or producer.op_type in ("Constant", "Concat", "Identity", "Cast")


def _flatten(ctx: AnalysisContext, node: ir.Node, xv: ChannelView, din: list[object]) -> str | None:
    k = normalize_axis(node.attributes.get_int("axis", 1), len(din))
    if xv.axis < k:
        return "Flatten merges the channel axis with the axes before it"
    stride, length = _prod(din[xv.axis + 1 :]), _prod(din[k:])
    if stride is None or length is None or stride[1] or length[1]:
        return "Flatten merges the channel axis with axes of unknown size"
    labels = xv.labels if length[0] == len(xv) else _spread(xv.labels, stride[0], length[0])
    ctx.set_view(node.outputs[0], 1, labels)
    return None


def _check_computed_shape(ctx: AnalysisContext, node: ir.Node) -> str | None:
    """A run-time target shape is followed only through Concat of 1-D pieces."""
    shape_value = node.inputs[1]
    concat = shape_value.producer() if shape_value is not None else None
    if concat is None or concat.op_type != "Concat":
        return "its target shape is computed at run time in a way onnxrecede cannot follow"
    for piece in concat.inputs:
        d = ctx.dims(piece)
        if d is None or len(d) != 1 or d[0] is None:
            return "its target shape is computed at run time in a way onnxrecede cannot follow"
    return None
