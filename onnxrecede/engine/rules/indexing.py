"""Ops that index the channel axis: Concat, Split, Slice, Gather, Pad.

Cases:
1. Concat on the channel axis concatenates labels (inputs with untracked channels contribute
   fixed, never-removed channels); on another axis it couples its inputs.
2. Split and Slice on the channel axis take sub-ranges (sizes and bounds are rewritten); Gather
   with constant indices on the channel axis re-indexes; on other axes all three pass through.
3. Pad on the channel axis (constant mode) adds pad channels that can be removed too, by
   shrinking the pads; spatial pads pass channels through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.context import AnalysisContext, RewriteContext
from onnxrecede.engine.registry import Rule, register
from onnxrecede.engine.rules._util import (
    computed_from_dims,
    normalize_axis,
    opset,
    tracked_input,
    unknown_dim_reason,
)
from onnxrecede.engine.spaces import PAD


@register("Concat")
class ConcatRule(Rule):
    behaviour = "channel-axis offsets; on another axis, couple the inputs"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        views = [ctx.view(v) for v in node.inputs]
        tracked = [v for v in views if v is not None]
        if not tracked:
            return None
        rank = ctx.rank(node.outputs[0]) or ctx.rank(node.inputs[0])
        if rank is None:
            return "the rank of its inputs is unknown"
        axis = normalize_axis(node.attributes.get_int("axis", 0), rank)
        if any(v.axis != tracked[0].axis for v in tracked):
            return "its inputs carry channels on different axes"
        if tracked[0].axis == axis:
            parts = []
            for v, view in zip(node.inputs, views):
                if view is not None:
                    parts.append(view.labels)
                    continue
                dims = ctx.dims(v)
                if dims is None or dims[axis] is None:
                    what = f"input '{v.name if v else ''}' has an unknown channel count"
                    return unknown_dim_reason(node, v, axis, what)
                parts.append(ctx.fixed(v, int(dims[axis]), node))  # type: ignore[arg-type]
            ctx.set_view(node.outputs[0], axis, np.concatenate(parts))
            return None
        main = tracked[0]
        for v, view in zip(node.inputs, views):
            if view is not None:
                if len(view) != len(main):
                    return "its inputs have different channel counts"
                ctx.couple(main, view)
            elif not ctx.is_constant(v):
                return f"input '{v.name if v else ''}' has channels onnxrecede cannot trace"
        ctx.set_view(node.outputs[0], main.axis, main.labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        out = node.outputs[0]
        view = ctx.view(out)
        if view is None or not ctx.changed(out):
            return
        for i, v in enumerate(node.inputs):
            if ctx.view(v) is None and ctx.constant(v) is not None:
                arr = ctx.constant(v)
                assert arr is not None
                if arr.ndim > view.axis and arr.shape[view.axis] == len(view):
                    ctx.slice_param(node, i, {view.axis: ctx.keep_positions(out)})  # type: ignore[dict-item]


def _split_sizes(
    ctx: AnalysisContext | RewriteContext, node: ir.Node, length: int
) -> list[int] | None:
    if "split" in node.attributes:
        return [int(s) for s in node.attributes["split"].as_ints()]
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        arr = ctx.constant(node.inputs[1])
        return None if arr is None else [int(s) for s in arr.ravel()]
    n = len(node.outputs)
    size = math.ceil(length / n)
    sizes = [size] * (n - 1) + [length - size * (n - 1)]
    return sizes if all(s >= 0 for s in sizes) else None


@dataclass(frozen=True)
class SplitChannels:
    """The split runs along the channel axis (its sizes are rewritten)."""


@dataclass(frozen=True)
class SliceChannels:
    """The slice takes positions ``start:stop`` of the channel axis, entry ``entry`` of its
    starts/ends."""

    entry: int
    start: int
    stop: int


@dataclass(frozen=True)
class GatherChannels:
    """The gather picks ``indices`` (non-negative) along the channel axis."""

    indices: np.ndarray


@dataclass(frozen=True)
class PadChannels:
    """The pad adds ``lo`` and ``hi`` channels around the channel axis ``axis``; ``pads`` is
    its full begin/end list."""

    axis: int
    lo: int
    hi: int
    pads: tuple[int, ...]


@register("Split")
class SplitRule(Rule):
    behaviour = "channel-axis sub-ranges; sizes are rewritten"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        axis = normalize_axis(node.attributes.get_int("axis", 0), rank)
        if axis != xv.axis:
            for out in node.outputs:
                ctx.set_view(out, xv.axis, xv.labels)
            return None
        sizes = _split_sizes(ctx, node, len(xv))
        if sizes is None or sum(sizes) != len(xv) or len(sizes) != len(node.outputs):
            return computed_from_dims(node, "its split sizes are not constant or do not add up")
        offset = 0
        for out, size in zip(node.outputs, sizes):
            ctx.set_view(out, axis, xv.labels[offset : offset + size])
            offset += size
        ctx.decide(node, SplitChannels())
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        if ctx.decision(node, SplitChannels) is None or not ctx.changed(node.inputs[0]):
            return
        sizes = np.asarray([len(ctx.keep_positions(o)) for o in node.outputs], dtype=np.int64)  # type: ignore[arg-type]
        if opset(node) >= 13:
            if "num_outputs" in node.attributes:
                del node.attributes["num_outputs"]
            ctx.set_constant_input(node, 1, sizes)
        else:
            node.attributes["split"] = ir.AttrInt64s("split", [int(s) for s in sizes])


def _slice_params(
    ctx: AnalysisContext | RewriteContext, node: ir.Node
) -> tuple[list[int], list[int], list[int], list[int]] | None:
    if opset(node) < 10:
        starts_attr = node.attributes.get_ints("starts")
        ends_attr = node.attributes.get_ints("ends")
        if starts_attr is None or ends_attr is None:
            return None
        axes_attr = list(node.attributes.get_ints("axes", list(range(len(starts_attr)))) or [])
        return list(starts_attr), list(ends_attr), axes_attr, [1] * len(starts_attr)
    vals: list[list[int] | None] = []
    for i in range(1, 5):
        v = node.inputs[i] if len(node.inputs) > i else None
        arr = ctx.constant(v) if v is not None else None
        if v is not None and arr is None:
            return None
        vals.append(None if arr is None else [int(a) for a in arr.ravel()])
    starts, ends, axes, steps = vals
    if starts is None or ends is None:
        return None
    return (
        starts,
        ends,
        axes if axes is not None else list(range(len(starts))),
        steps if steps is not None else [1] * len(starts),
    )


@register("Slice")
class SliceRule(Rule):
    behaviour = "channel-axis sub-range (step 1); bounds are rewritten"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv, rank = ctx.view(node.inputs[0]), ctx.rank(node.inputs[0])
        if xv is None:
            return None
        params = _slice_params(ctx, node)
        if params is None or rank is None:
            return computed_from_dims(node, "its bounds are computed at run time")
        starts, ends, axes, steps = params
        axes = [normalize_axis(a, rank) for a in axes]
        if xv.axis not in axes:
            ctx.set_view(node.outputs[0], xv.axis, xv.labels)
            return None
        i = axes.index(xv.axis)
        if steps[i] != 1:
            return "it slices the channel axis with a step other than 1"
        start, stop, _ = slice(starts[i], ends[i]).indices(len(xv))
        labels = xv.labels[start:stop]
        if not len(labels):
            return "it slices the channel axis to nothing"
        ctx.set_view(node.outputs[0], xv.axis, labels)
        ctx.decide(node, SliceChannels(i, start, stop))
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        x = node.inputs[0]
        xv, decided = ctx.view(x), ctx.decision(node, SliceChannels)
        if xv is None or decided is None or not ctx.changed(x):
            return
        params = _slice_params(ctx, node)
        assert params is not None
        starts, ends, _, _ = params
        i, start, stop = decided.entry, decided.start, decided.stop
        kept = ctx.keep_element[xv.labels]
        new_start = int(kept[:start].sum())
        new_stop = new_start + int(kept[start:stop].sum())
        if opset(node) < 10:
            starts, ends = list(starts), list(ends)
            starts[i], ends[i] = new_start, new_stop
            node.attributes["starts"] = ir.AttrInt64s("starts", starts)
            node.attributes["ends"] = ir.AttrInt64s("ends", ends)
            return
        for input_index, value in ((1, new_start), (2, new_stop)):
            arr = np.asarray(ctx.constant(node.inputs[input_index])).copy()
            arr[i] = value
            ctx.set_constant_input(node, input_index, arr)


@register("Gather")
class GatherRule(Rule):
    behaviour = "channel-axis re-indexing with constant indices; indices are rewritten"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        got = tracked_input(ctx, node)
        if not isinstance(got, tuple):
            return got
        xv, rank = got
        axis = normalize_axis(node.attributes.get_int("axis", 0), rank)
        idx = ctx.constant(node.inputs[1])
        idx_rank = ctx.rank(node.inputs[1])
        if idx_rank is None:
            return "the rank of its indices is unknown"
        if axis != xv.axis:
            shift = idx_rank - 1 if axis < xv.axis else 0
            ctx.set_view(node.outputs[0], xv.axis + shift, xv.labels)
            return None
        if idx is None or idx.ndim != 1:
            return "it gathers channels with non-constant or non-1-D indices"
        indices = idx.astype(np.int64) % len(xv)
        ctx.set_view(node.outputs[0], axis, xv.labels[indices])
        ctx.decide(node, GatherChannels(indices))
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        decided = ctx.decision(node, GatherChannels)
        if decided is None or not ctx.changed(x):
            return
        keep_in = ctx.keep_positions(x)
        keep_out = ctx.keep_positions(out)
        assert keep_in is not None and keep_out is not None
        dtype = np.asarray(ctx.constant(node.inputs[1])).dtype
        new = np.searchsorted(keep_in, decided.indices[keep_out]).astype(dtype)
        ctx.set_constant_input(node, 1, new)


def _pads(ctx: AnalysisContext | RewriteContext, node: ir.Node, rank: int) -> list[int] | None:
    if opset(node) < 11:
        p = node.attributes.get_ints("pads")
        return None if p is None else list(p)
    arr = ctx.constant(node.inputs[1]) if len(node.inputs) > 1 else None
    if arr is None:
        return None
    pads = [int(p) for p in arr.ravel()]
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        axes = ctx.constant(node.inputs[3])
        if axes is None:
            return None
        full = [0] * (2 * rank)
        ax = [normalize_axis(int(a), rank) for a in axes.ravel()]
        for i, a in enumerate(ax):
            full[a], full[a + rank] = pads[i], pads[i + len(ax)]
        return full
    return pads


@register("Pad")
class PadRule(Rule):
    behaviour = "spatial pads pass through; constant pads on the channel axis add removable pad channels (ResNet option-A shortcuts)"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv, rank = ctx.view(node.inputs[0]), ctx.rank(node.inputs[0])
        if xv is None:
            return None
        pads = _pads(ctx, node, rank) if rank is not None else None
        if pads is None or rank is None:
            return computed_from_dims(node, "its pads are computed at run time")
        lo, hi = pads[xv.axis], pads[xv.axis + rank]
        if lo == 0 and hi == 0:
            ctx.set_view(node.outputs[0], xv.axis, xv.labels)
            return None
        if node.attributes.get_string("mode", "constant") != "constant" or lo < 0 or hi < 0:
            return "it pads the channel axis in a non-constant mode or crops it"
        lo_labels = ctx.space.new_atom(lo, PAD, node, node.outputs[0])
        hi_labels = ctx.space.new_atom(hi, PAD, node, node.outputs[0])
        ctx.set_view(node.outputs[0], xv.axis, np.concatenate([lo_labels, xv.labels, hi_labels]))
        ctx.decide(node, PadChannels(xv.axis, lo, hi, tuple(pads)))
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        out = node.outputs[0]
        ov, decided = ctx.view(out), ctx.decision(node, PadChannels)
        if ov is None or decided is None or not ctx.changed(out):
            return
        kept = ctx.keep_element[ov.labels]
        axis, lo, hi, rank = decided.axis, decided.lo, decided.hi, len(decided.pads) // 2
        new = list(decided.pads)
        new[axis] = int(kept[:lo].sum())
        new[axis + rank] = int(kept[len(kept) - hi :].sum()) if hi else 0
        if opset(node) < 11:
            node.attributes["pads"] = ir.AttrInt64s("pads", new)
            return
        if len(node.inputs) > 3 and node.inputs[3] is not None:
            ax = [
                normalize_axis(int(a), rank)
                for a in np.asarray(ctx.constant(node.inputs[3])).ravel()
            ]
            new = [new[a] for a in ax] + [new[a + rank] for a in ax]
        ctx.set_constant_input(node, 1, np.asarray(new, dtype=np.int64))
