"""Small helpers shared by the rule modules."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import as_int_list
from onnxrecede.engine.context import AnalysisContext
from onnxrecede.engine.spaces import ChannelView


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
