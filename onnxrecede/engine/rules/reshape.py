"""Flatten and Reshape.

Cases:
1. Flatten and Reshape that keep the channel axis, or merge it with the axes after it (the
   consumer then sees each channel as a block of H*W columns), pass channels through; the dims
   before the channel axis must match as a whole, symbolically: ``[N, C] -> [-1, C, 1, 1]``
   keeps the channel axis whatever the batch ``N`` (see ``onnxrecede.engine.symdims``);
2. splitting the channel axis or merging it with axes before it (a channel shuffle) is a
   barrier that names the target and input dims;
3. a constant target shape is rewritten; a computed one is followed through Concat pieces,
   pieces read from a tensor's shape (``Shape`` -> ``Gather``) standing for that tensor's dims;
4. a Reshape that does not match is handed to ``rules.heads`` (attention heads: merging the
   head axis with a batch axis, splitting a channels-last axis into (heads, head_dim));
5. a match that fails only because a dim is symbolic or unknown (it would hold were the
   symbols bound) is a barrier that says so and names ``--shape``.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine import symdims
from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.context import AnalysisContext, RewriteContext
from onnxrecede.engine.registry import Rule, register
from onnxrecede.engine.rules._util import computed_from_dims, normalize_axis
from onnxrecede.engine.rules.heads import SPLIT_REASON, reshape_heads
from onnxrecede.engine.spaces import ChannelView
from onnxrecede.engine.symdims import (
    Dim,
    describe_symbols,
    product,
    resolve_target,
    shape_hint,
    show,
    substitute,
    value_dims,
)

_SPLITS = "splits {channel} or merges it with the axes before it (e.g. a channel shuffle)"
_MERGES = "merges {channel} with the axes before it"


def _spread(labels: np.ndarray, stride: int, length: int) -> np.ndarray:
    """Labels of an axis made by merging the channel axis with trailing axes of size ``stride``."""
    return labels[(np.arange(length) // stride) % len(labels)]


def _match(channels: int, axis: int, din: list[Dim], dout: list[Dim]) -> tuple[int, int] | None:
    """(output axis, stride) of the channel axis (``axis`` of ``din``) after the reshape to
    ``dout``, or None: the dims before it must match as a whole (equal products, symbols
    included), the channel axis stays whole, possibly merged with known trailing axes."""
    before = product(din[:axis])
    # Several output axes can start at the same offset when size-1 axes are around.
    for j, target in enumerate(dout):
        if product(dout[:j]) != before or not target.known or target.coeff < channels:
            continue
        for k in range(axis, len(din)):
            block = product(din[axis : k + 1])
            if not block.known or block.coeff > target.coeff:
                break
            if block == target and product(dout[j + 1 :]) == product(din[k + 1 :]):
                return j, target.coeff // channels
    return None


def _target_or_reason(
    node: ir.Node, xv: ChannelView, din: list[Dim], dout: list[Dim], shown: str, what: str
) -> tuple[int, int] | str:
    """The match, or what was found: an unknown dim (case 4) or a real split or merge (case 2)."""
    found = _match(len(xv), xv.axis, din, dout)
    if found is not None:
        return found
    names = symdims.symbols([*din, *dout])
    if names and _match(len(xv), xv.axis, substitute(din, 1), substitute(dout, 1)) is not None:
        return (
            f"{shown} could not be matched to the input {show(din)} because "
            f"{describe_symbols(names)}; {shape_hint(node.graph)}"
        )
    channel = f"the channel axis (axis {xv.axis}, {len(xv)} channels) of the input {show(din)}"
    return f"{shown} {what.format(channel=channel)}"


@register("Flatten", "Reshape")
class ReshapeRule(Rule):
    behaviour = "keep the channel axis or merge it with trailing axes (consumer loses blocks of H*W columns), also with a symbolic batch (`[-1, C, 1, 1]`), or with a batch axis (heads); split a channels-last axis into (heads, head_dim) (whole heads or the same dims of every head go); splitting another channel axis (channel shuffle) is a barrier"

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        return values  # the channels keep their values, whatever the layout

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        x, out = node.inputs[0], node.outputs[0]
        xv = ctx.view(x)
        if xv is None:
            return None
        din = _input_dims(ctx, x)
        if din is None:
            return "the rank of its input is unknown"
        if node.op_type == "Flatten":
            k = normalize_axis(node.attributes.get_int("axis", 1), len(din))
            dout = [product(din[:k]), product(din[k:])]
            found = _target_or_reason(node, xv, din, dout, f"Flatten at axis {k}", _MERGES)
        else:
            entries = _target_entries(ctx, node)
            if entries is None:
                return computed_from_dims(
                    node,
                    "its target shape is computed at run time in a way onnxrecede cannot follow",
                )
            allowzero = bool(node.attributes.get_int("allowzero", 0))
            dout = _with_inferred(resolve_target(din, entries, allowzero), value_dims(out))
            shown = f"the target shape {show(entries)}"
            found = _target_or_reason(node, xv, din, dout, shown, _SPLITS)
            if isinstance(found, str) and symdims.SHAPE_HINT not in found:
                # a real split or merge: attention heads (rules/heads.py), else what was found;
                # a match that only unknown dims prevent stays that barrier (case 5)
                heads = reshape_heads(ctx, node, xv, _plain(din), _plain(dout))
                return found if heads == SPLIT_REASON else heads
        if isinstance(found, str):
            return found
        axis, stride = found
        length = dout[axis].coeff
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
                elif arr is None and n == 1:
                    # read at run time from another tensor's static dim (TorchScript's
                    # ``x.reshape(b, n, c)`` with c taken from the input): now a constant
                    ctx.set_constant_input(concat, i, np.asarray([len(keep)], dtype=np.int64))
                return
            offset += n


def _is_direct_or_folded(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is None or producer.op_type in ("Constant", "Concat", "Identity", "Cast")


def _plain(dims: list[Dim]) -> list[object]:
    """Dims as ``rules.heads`` reads them: an int where known, an opaque object where not."""
    return [d.coeff if d.known else object() for d in dims]


def _input_dims(ctx: AnalysisContext, x: ir.Value | None) -> list[Dim] | None:
    dims = value_dims(x)
    if dims is None:
        known = ctx.dims(x)  # a constant cone folded
        dims = None if known is None else [Dim(int(d)) for d in known if d is not None]
    return dims


def _with_inferred(resolved: list[Dim], inferred: list[Dim] | None) -> list[Dim]:
    """A dim the target leaves unknown (a piece computed at run time) taken from inference."""
    if inferred is None or len(inferred) != len(resolved):
        return resolved
    return [
        i if r.syms and any(s.startswith("?") for s in r.syms) and not i.syms else r
        for r, i in zip(resolved, inferred)
    ]


def _target_entries(ctx: AnalysisContext, node: ir.Node) -> list[int | Dim] | None:
    """The target shape, an entry per output axis: an int (``-1`` and ``0`` included) or, for
    a piece read from a tensor's shape at run time, that tensor's :class:`Dim` (case 3)."""
    shape_value = node.inputs[1] if len(node.inputs) > 1 else None
    arr = ctx.constant(shape_value)
    if arr is not None:
        return [int(v) for v in arr.ravel()]
    concat = shape_value.producer() if shape_value is not None else None
    pieces = concat.inputs if concat is not None and concat.op_type == "Concat" else [shape_value]
    entries: list[int | Dim] = []
    for piece in pieces:
        found = _piece_entries(ctx, piece)
        if found is None:
            return None
        entries.extend(found)
    return entries


def _piece_entries(ctx: AnalysisContext, piece: ir.Value | None) -> list[int | Dim] | None:
    arr = ctx.constant(piece)
    if arr is not None:
        return [int(v) for v in arr.ravel()]
    dims = _shape_read(ctx, piece)
    if dims is not None:
        return list(dims)
    known = ctx.dims(piece)
    if known is None or len(known) != 1 or known[0] is None:
        return None
    # an entry computed some other way: unknown, unless inference knows the output dim
    return [Dim(1, (f"?{piece.name if piece else ''}:{i}",)) for i in range(known[0])]


def _shape_read(ctx: AnalysisContext, piece: ir.Value | None) -> list[Dim] | None:
    """Dims read at run time from a tensor's shape: ``Shape`` (start/end), optionally through
    ``Gather`` of constant indices, ``Unsqueeze``/``Squeeze`` and ``Cast``."""
    node = piece.producer() if piece is not None else None
    if node is None:
        return None
    if node.op_type == "Shape":
        dims = value_dims(node.inputs[0])
        if dims is None:
            return None
        start = node.attributes.get_int("start", 0)
        end = node.attributes.get_int("end", len(dims))
        return dims[slice(start, end)]
    if node.op_type in ("Unsqueeze", "Squeeze", "Cast"):
        return _shape_read(ctx, node.inputs[0])
    if node.op_type == "Gather" and node.attributes.get_int("axis", 0) == 0:
        source, index = _shape_read(ctx, node.inputs[0]), ctx.constant(node.inputs[1])
        if source is None or index is None:
            return None
        return [source[int(i)] for i in index.ravel()]
    return None
