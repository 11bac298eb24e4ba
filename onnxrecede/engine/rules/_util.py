"""Small helpers shared by the rule modules."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import as_int_list
from onnxrecede.engine.context import AnalysisContext
from onnxrecede.engine.spaces import ChannelView
from onnxrecede.engine.symdims import describe_symbols, shape_hint, symbols, value_dims


def opset(node: ir.Node) -> int:
    """The default-domain opset a node runs under (the latest we know of if none is declared)."""
    if node.version is not None:
        return int(node.version)
    imports = node.graph.opset_imports if node.graph is not None else {}
    version = imports.get("", imports.get("ai.onnx"))
    return int(version) if version is not None else 21


def tracked_input(ctx: AnalysisContext, node: ir.Node) -> tuple[ChannelView, int] | str | None:
    """The channel view and rank of ``node``'s first input, or what the rule must return:
    None when that input carries no tracked channels (nothing to do), the barrier reason when
    its rank is unknown."""
    view, rank = ctx.view(node.inputs[0]), ctx.rank(node.inputs[0])
    if view is None:
        return None
    if rank is None:
        return "the rank of its input is unknown"
    return view, rank


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def ints_from_attr_or_input(
    ctx: AnalysisContext, node: ir.Node, attr: str, input_index: int
) -> tuple[list[int] | None, bool]:
    """An int list given either as an attribute or as a constant input.

    Returns ``(values, known)``: ``known`` is False when the input exists but is not constant.
    """
    if attr in node.attributes:
        return [int(x) for x in node.attributes[attr].as_ints()], True
    if len(node.inputs) > input_index and node.inputs[input_index] is not None:
        vals = as_int_list(ctx.constant(node.inputs[input_index]))
        return vals, vals is not None
    return None, True


def kept_count(keep: np.ndarray | None, default: int) -> int:
    return default if keep is None else int(len(keep))


def computed_from_dims(node: ir.Node, reason: str, max_depth: int = 16) -> str:
    """``reason`` for a node whose parameter inputs are computed at run time, naming the
    option that removes the barrier when they are computed from dims not known until then
    (``Shape`` of a tensor with symbolic dims: binding the inputs folds them to constants)."""
    found: dict[str, None] = {}
    stack = [(v, 0) for v in node.inputs[1:] if v is not None]
    seen: set[ir.Value] = set()
    while stack:
        value, depth = stack.pop()
        producer = value.producer()
        if value in seen or producer is None or depth > max_depth:
            continue
        seen.add(value)
        if producer.op_type == "Shape":
            dims = value_dims(producer.inputs[0])
            if dims is not None and not all(d.known for d in dims):
                found.update(dict.fromkeys(symbols(d for d in dims if not d.known)))
            continue
        stack.extend((v, depth + 1) for v in producer.inputs if v is not None)
    if not found:
        return reason
    return f"{reason} from dims known only then ({describe_symbols(list(found))}); {shape_hint(node.graph)}"


def unknown_dim_reason(node: ir.Node, value: ir.Value | None, axis: int, what: str) -> str:
    """``what`` about ``value``'s dim ``axis``, naming ``--shape`` when the dim is symbolic."""
    dims = value_dims(value)
    if dims is None or axis >= len(dims) or dims[axis].known:
        return what
    return f"{what} ({describe_symbols(symbols([dims[axis]]))}); {shape_hint(node.graph)}"
