"""Cost of a plan without rewriting: MACs and parameters estimated from one analysis.

Each counted quantity of :mod:`onnxrecede.cost` shrinks by the kept fraction of the channel
axes it spans, read from the analysis' channel views:

1. Conv / ConvTranspose: MACs and weight scale by kept output x kept input fraction (output
   only for a depthwise conv, whose ``group`` follows its channels); the bias by the output.
2. Gemm / MatMul with a constant weight: MACs and weight by output x input fraction (the input
   counts when its channel axis is the contracted one); a bias by the output.
3. BatchNormalization / InstanceNormalization scale and shift, PRelu slopes and per-channel
   Mul/Add constants: by the kept fraction of the data input, where the constant spans the
   channel axis.

The search for ``--target-macs`` / ``--target-params`` evaluates many plans with this; the
report always gives the cost counted on the rewritten model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxrecede.engine import cost as cost_mod
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.spaces import ChannelView

_PER_CHANNEL = frozenset({"BatchNormalization", "InstanceNormalization"})
_BROADCAST = frozenset({"PRelu", "Mul", "Add"})


@dataclass(frozen=True)
class Term:
    """One counted quantity and the channel axes (label arrays) whose kept fraction scales it."""

    amount: int
    axes: tuple[np.ndarray, ...]

    def after(self, keep_element: np.ndarray) -> float:
        value = float(self.amount)
        for labels in self.axes:
            value *= float(keep_element[labels].mean()) if len(labels) else 1.0
        return value


@dataclass
class CostModel:
    """MAC and parameter terms of a model; ``estimate(keep_element)`` -> (MACs, params)."""

    macs: list[Term]
    params: list[Term]
    macs_before: int
    params_before: int

    def estimate(self, keep_element: np.ndarray) -> tuple[int, int]:
        macs = sum(t.after(keep_element) for t in self.macs)
        params = sum(t.after(keep_element) for t in self.params)
        return int(round(macs)), int(round(params))


def _labels(view: ChannelView | None) -> tuple[np.ndarray, ...]:
    return () if view is None else (view.labels,)


def _dims(value: ir.Value | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def _is_depthwise(node: ir.Node) -> bool:
    group = node.attributes.get_int("group", 1)
    w = _dims(node.inputs[1])
    if group <= 1 or w is None:
        return False
    cin = w[0] if node.op_type == "ConvTranspose" else w[1] * group
    return group == cin


def _contracted_input(analysis: Analysis, node: ir.Node) -> tuple[np.ndarray, ...]:
    """The input's channel labels when its channel axis is the one the node contracts."""
    x = analysis.ctx.view(node.inputs[0])
    if x is None:
        return ()
    op = node.op_type
    if op in ("Conv", "ConvTranspose"):
        return () if _is_depthwise(node) else (x.labels,)
    rank = len(_dims(node.inputs[0]) or ()) or None
    if op == "Gemm":
        k_axis = 0 if node.attributes.get_int("transA", 0) else 1
        return (x.labels,) if x.axis == k_axis else ()
    if op == "MatMul" and rank is not None:
        return (x.labels,) if x.axis == rank - 1 else ()
    return ()


def _node_axes(analysis: Analysis, node: ir.Node) -> tuple[np.ndarray, ...]:
    out = _labels(analysis.ctx.view(node.outputs[0]) if node.outputs else None)
    return out + _contracted_input(analysis, node)


def _param_axes(
    analysis: Analysis, node: ir.Node, index: int, value: ir.Value | None
) -> tuple[np.ndarray, ...]:
    op = node.op_type
    out = _labels(analysis.ctx.view(node.outputs[0]) if node.outputs else None)
    if op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        if index == 1:
            return out + _contracted_input(analysis, node)
        if index == 2:
            return out
        return ()
    if op in _PER_CHANNEL:
        return _labels(analysis.ctx.view(node.inputs[0]))
    if op in _BROADCAST:
        data = [i for i in node.inputs if i is not None and i is not value]
        view = analysis.ctx.view(data[0]) if data else None
        pd, xd = _dims(value), _dims(data[0]) if data else None
        if view is None or pd is None or xd is None:
            return ()
        axis = view.axis - (len(xd) - len(pd))
        return (view.labels,) if 0 <= axis < len(pd) and pd[axis] == len(view) > 1 else ()
    return ()


def build_cost_model(analysis: Analysis, before: cost_mod.Cost) -> CostModel:
    """Terms of ``analysis.model`` (not yet rewritten), aligned with ``before.per_node``."""
    nodes = list(ir.traversal.RecursiveGraphIterator(analysis.model.graph))
    macs: list[Term] = []
    params: list[Term] = []
    seen: set[int] = set()
    for node, counted in zip(nodes, before.per_node):
        if counted.macs:
            macs.append(Term(counted.macs, _node_axes(analysis, node)))
        for i, numel in cost_mod.parameter_inputs(node, seen):
            params.append(Term(numel, _param_axes(analysis, node, i, node.inputs[i])))
    return CostModel(macs, params, before.macs, before.params)
