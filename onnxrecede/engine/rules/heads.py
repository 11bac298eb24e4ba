"""Attention heads: the channel axis split into (heads, head_dim) and the matmuls between
activations (scores = q.k^T, context = attention.v).

The Reshape and MatMul rules hand over here for the cases they do not cover themselves.

Cases:
1. A Reshape whose output sees the channels along one axis only (merging the head axis with a
   batch axis before it, ``[B, H, N, D] -> [B*H, N, D]``, or (heads, head_dim) back into the
   channel axis, ``[B, N, H, D] -> [B, N, H*D]``) is an index map: the label of each output
   position is read off the flat index. Nothing is coupled.
2. A Reshape that splits a channels-last axis over several output axes:
   a. axes that every path indexes away (Gather of one index, Split into singletons, Slice of
      one, each then squeezed) are *parts* (the q/k/v of a fused projection);
   b. of the other axes (size-1 axes included: one head, or a head_dim of 1), one left is the
      channel axis as is (``[3, E]``); two are (heads, head_dim). ``head_units`` picks which one stays tracked: the head axis (whole heads are
      removed) or the head_dim axis (the same dims of every head are removed);
   c. the channels that share a position on the tracked axis are coupled (one head, or one dim
      of every head, of every part): the reshaped tensor stays rectangular;
   d. more than two such axes, or a channel axis that is not the last one (a channel shuffle),
      stay barriers.
3. MatMul between two activations (batch dims broadcast):
   a. channels on aligned batch axes (the heads of q and k, of the attention and v) are coupled
      and pass to the output;
   b. channels on both contracted axes (the head dims of q and k) are coupled and leave no
      channels on the output;
   c. channels on A's rows or B's columns (v's head dims) pass to the output;
   d. channels on one contracted axis only, on a batch axis facing an operand with untraced
      channels there, or on two different output axes, are barriers.
   Every tracked input is a mask site: the masked reference zeroes its removed channels, as if
   the q/k/v columns and biases were zeroed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.context import AnalysisContext, HeadView
from onnxrecede.engine.rules._util import ints_from_attr_or_input, normalize_axis
from onnxrecede.engine.spaces import ChannelView

HEAD_UNITS = ("heads", "dims")
#: largest label field (elements of the reshaped output's tail) computed for case 1 and 2
MAX_FIELD = 1 << 22
SPLIT_REASON = (
    "Reshape splits the channel axis or merges it with the axes before it (e.g. a channel shuffle)"
)


def period(labels: np.ndarray) -> int:
    """Smallest p dividing len(labels) with labels[i] == labels[i % p]."""
    n = len(labels)
    for p in range(1, n + 1):
        if n % p == 0 and np.array_equal(labels, np.tile(labels[:p], n // p)):
            return p
    return n


def _run(labels: np.ndarray) -> int:
    """Largest r dividing len(labels) with labels constant on runs of r."""
    n = len(labels)
    for r in range(n, 0, -1):
        if n % r == 0 and np.array_equal(labels, np.repeat(labels[::r], r)):
            return r
    return 1


def label_field(xv: ChannelView, stride: int, tail: list[int]) -> np.ndarray | str:
    """The label of every position of the output's trailing axes ``tail`` (case 1).

    ``stride``: elements per channel position in the input (product of the axes after it).
    The labels repeat with the flat index; ``tail`` must hold a whole period of them.
    """
    p = period(xv.labels)
    r = _run(xv.labels[:p])
    base, step = xv.labels[:p:r], stride * r
    span = step * len(base)
    size = math.prod(tail)
    if size % span:
        return "the reshaped axes do not hold whole channel periods"
    if size > MAX_FIELD:
        return f"the reshaped axes hold over {MAX_FIELD} elements"
    flat = (np.arange(size, dtype=np.int64) // step) % len(base)
    return base[flat].reshape(tail)


def _varying_axes(field: np.ndarray) -> list[int]:
    return [k for k in range(field.ndim) if not (field == field.take([0], axis=k)).all()]


def reshape_heads(
    ctx: AnalysisContext,
    node: ir.Node,
    xv: ChannelView,
    din: list[object],
    dout: list[object],
) -> str | None:
    """Cases 1 and 2: set the Reshape's output view, or return why not."""
    after = din[xv.axis + 1 :]
    if not all(isinstance(d, int) for d in after):
        return SPLIT_REASON
    stride = math.prod(after)  # type: ignore[arg-type]
    span = stride * len(xv)
    start = _tail_start(dout, span)
    if start is None:
        return SPLIT_REASON
    tail = [int(d) for d in dout[start:]]  # type: ignore[call-overload]
    field = label_field(xv, stride, tail)
    if isinstance(field, str):
        return field
    varying = _varying_axes(field)
    if len(varying) == 1:
        k = varying[0]
        ctx.set_view(node.outputs[0], start + k, _along(field, k))
        return None
    if not varying or xv.axis != len(din) - 1:
        return SPLIT_REASON
    return _split(ctx, node, field, varying, start)


def _tail_start(dout: list[object], span: int) -> int | None:
    """The last output axis from which static trailing axes hold a multiple of ``span``."""
    size = 1
    for j in range(len(dout) - 1, -1, -1):
        d = dout[j]
        if not isinstance(d, int):
            return None
        size *= d
        if size % span == 0:
            return j
    return None


def _along(field: np.ndarray, k: int) -> np.ndarray:
    index = [0] * field.ndim
    index[k] = slice(None)  # type: ignore[call-overload]
    return np.ascontiguousarray(field[tuple(index)])


def _split(
    ctx: AnalysisContext, node: ir.Node, field: np.ndarray, varying: list[int], start: int
) -> str | None:
    """Case 2: keep one axis tracked and couple the channels that share a position on it."""
    out = node.outputs[0]
    rest = [
        k
        for k in range(field.ndim)
        if (k in varying or field.shape[k] == 1) and not indexed_away(ctx, out, start + k)
    ]
    if len(rest) == 1:
        k = rest[0]
    elif len(rest) == 2:
        k = rest[0] if ctx.head_units == "heads" else rest[1]
    else:
        return "Reshape splits the channel axis into more than (heads, head_dim) axes"
    moved = np.moveaxis(field, k, 0).reshape(field.shape[k], -1)
    for row in moved:
        for label in np.unique(row[1:]).tolist():
            ctx.space.union(int(row[0]), int(label))
    labels = np.ascontiguousarray(moved[:, 0])
    ctx.set_view(out, start + k, labels)
    ctx.head_views.append(HeadView(node, labels, ctx.head_units if len(rest) == 2 else None))
    return None


def indexed_away(ctx: AnalysisContext, value: ir.Value, axis: int, depth: int = 0) -> bool:
    """Whether every path from ``value`` removes ``axis`` by taking one index of it (case 2a)."""
    uses = value.uses()
    if not uses or depth > 12:
        return False
    return all(_use_indexes_away(ctx, u.node, u.idx, value, axis, depth) for u in uses)


def _use_indexes_away(
    ctx: AnalysisContext, node: ir.Node, idx: int, value: ir.Value, axis: int, depth: int
) -> bool:
    rank, op = ctx.rank(value), node.op_type
    if idx != 0 or rank is None or node.domain not in ("", "ai.onnx"):
        return False
    out = node.outputs[0]
    if op == "Identity":
        return indexed_away(ctx, out, axis, depth + 1)
    if op == "Transpose":
        perm = [int(p) for p in node.attributes.get_ints("perm", list(range(rank))[::-1])]
        return indexed_away(ctx, out, perm.index(axis), depth + 1)
    if op in ("Squeeze", "Unsqueeze"):
        return _through_squeeze(ctx, node, rank, axis, depth)
    if op == "Gather":
        indices = ctx.constant(node.inputs[1])
        own = normalize_axis(node.attributes.get_int("axis", 0), rank)
        return own == axis and indices is not None and indices.ndim == 0
    if op in ("Split", "Slice"):
        return _pieces_of_one(ctx, node, rank, axis, depth)
    return False


def _through_squeeze(ctx: AnalysisContext, node: ir.Node, rank: int, axis: int, depth: int) -> bool:
    axes, known = ints_from_attr_or_input(ctx, node, "axes", 1)
    if not known or axes is None:
        return False
    if node.op_type == "Squeeze":
        axes = [normalize_axis(a, rank) for a in axes]
        if axis in axes:
            return True
        return indexed_away(ctx, node.outputs[0], axis - sum(a < axis for a in axes), depth + 1)
    out_rank = rank + len(axes)
    inserted = {normalize_axis(a, out_rank) for a in axes}
    kept = [i for i in range(out_rank) if i not in inserted]
    return indexed_away(ctx, node.outputs[0], kept[axis], depth + 1)


def _pieces_of_one(ctx: AnalysisContext, node: ir.Node, rank: int, axis: int, depth: int) -> bool:
    """Split or Slice along ``axis`` into pieces of one index, each indexed away after."""
    if node.op_type == "Split":
        own = normalize_axis(node.attributes.get_int("axis", 0), rank)
    else:
        axes = ctx.constant(node.inputs[3]) if len(node.inputs) > 3 else None
        if axes is None or axes.size != 1:
            return False
        own = normalize_axis(int(axes.ravel()[0]), rank)
    if own != axis:
        return False
    for out in node.outputs:
        dims = ctx.dims(out)
        if dims is None or dims[axis] != 1 or not indexed_away(ctx, out, axis, depth + 1):
            return False
    return True
