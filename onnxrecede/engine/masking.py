"""Attention heads outside the rules: the masked reference's activation masks, and the softmax
scale.

1. Masks: ``Mul`` by a 0/1 constant before a MatMul between activations zeroes the removed
   channels of q, k and v (as zeroing their projections' columns and biases would).
2. Scales: a softmax scale computed from the shape of a pruned tensor is frozen to the value it
   had (``freeze_shape_scales``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import make_tensor
from onnxrecede.engine.context import ConsumeSite, RewriteContext


def mask_activations(
    graph: ir.Graph,
    sites: Sequence[ConsumeSite],
    node_map: Mapping[ir.Node, ir.Node],
    keep_element: np.ndarray,
) -> None:
    """Insert ``x * mask`` for every mask site with removed channels (in ``graph``, a copy)."""
    for i, site in enumerate(sites):
        keep = keep_element[site.labels]
        if keep.all():
            continue
        node = node_map[site.node]
        x = node.inputs[site.input_index]
        assert x is not None and x.shape is not None
        dtype = x.dtype.numpy() if x.dtype is not None else np.float32
        mask = keep.astype(dtype).reshape([-1] + [1] * (len(x.shape) - site.axis - 1))
        name = f"{x.name or 'x'}_head_mask_{i}"
        const = ir.Value(name=name, shape=ir.Shape(mask.shape), const_value=make_tensor(mask, name))
        const.dtype = const.const_value.dtype  # type: ignore[union-attr]
        graph.register_initializer(const)
        mul = ir.Node("", "Mul", [x, const], name=f"{name}_mul")
        mul.outputs[0].name = f"{name}_out"
        if x.dtype is not None:
            mul.outputs[0].dtype = x.dtype
        graph.insert_before(node, mul)
        node.replace_input_with(site.input_index, mul.outputs[0])


#: ops whose scalar operand may be a softmax scale computed from a shape (``1/sqrt(D)``)
_SCALE_OPS = frozenset({"Mul", "Div"})


def freeze_shape_scales(ctx: RewriteContext, nodes: Sequence[ir.Node]) -> None:
    """Keep the softmax scale the exported constant.

    A scale computed at run time from the shape of a tensor whose channels change (the
    TorchScript exporter writes ``1/sqrt(Shape(q)[-1])``) would change with the head dims;
    such a one-element operand of Mul/Div is replaced by the value it had.
    """
    for node in nodes:
        if node.op_type not in _SCALE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        for i, value in enumerate(node.inputs):
            if value is None or ctx.view(value) is not None or ctx.const.direct(value) is not None:
                continue
            folded = ctx.constant(value)
            if folded is not None and folded.size == 1 and _reads_changed_shape(ctx, value):
                ctx.set_constant_input(node, i, folded)


def _reads_changed_shape(ctx: RewriteContext, value: ir.Value, depth: int = 0) -> bool:
    node = value.producer()
    if node is None or depth > 16:
        return False
    if node.op_type == "Shape":
        return ctx.changed(node.inputs[0])
    return any(v is not None and _reads_changed_shape(ctx, v, depth + 1) for v in node.inputs)
