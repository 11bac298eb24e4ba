"""The latency a table predicts for any pruned version of its model, read from its weights.

Cases:
1. Every layer of the table is found by name in the pruned model; its kept output and input
   counts are read from its weight (Conv ``[out, in / group, ...]``, ConvTranspose
   ``[in, out / group, ...]``, Gemm by ``transB``, MatMul ``[in, out]``).
2. The prediction is the table's (:mod:`onnxrecede.policy.latency`, cases 1-2): each layer's
   full latency scaled by its curves at those counts, summed, over the summed full latency.
   A layer missing from the pruned model (a removed branch) counts 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx_ir as ir

from onnxrecede.latency.extract import _flag
from onnxrecede.latency.units import read_curve


def kept_counts(node: ir.Node) -> tuple[int, int] | None:
    """Case 1: (kept out, kept in) of a layer, or None without a constant weight."""
    w = node.inputs[1] if len(node.inputs) > 1 else None
    if w is None or w.const_value is None:
        return None
    dims = [int(d) for d in w.const_value.shape.numpy()]
    group = node.attributes.get_int("group", 1) if node.op_type.startswith("Conv") else 1
    if node.op_type == "Conv":
        return dims[0], dims[1] * group
    if node.op_type == "ConvTranspose":
        return dims[1] * group, dims[0]
    if node.op_type == "Gemm" and _flag(node, "transB"):
        return dims[0], dims[1]
    return dims[-1], dims[-2]


def predicted_fraction(table: Mapping[str, Any], pruned: ir.Model) -> float:
    """Case 2: the predicted latency of ``pruned`` as a fraction of the table's model."""
    nodes = {n.name: n for n in pruned.graph if n.name}
    total = 0.0
    for row in table["units"]:
        node = nodes.get(row["node"])
        if node is None:
            continue
        counts = kept_counts(node)
        full = float(row["full_ms"])
        value = full
        for side, kept in zip(("out", "in"), counts or (None, None)):
            curve = read_curve(row.get(side))
            if curve is not None and kept is not None and full > 0:
                value *= curve.at(kept) / full
        total += value
    return total / float(table["units_ms"])
