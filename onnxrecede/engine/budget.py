"""Cost of a plan without rewriting: MACs and parameters estimated from one analysis.

Each counted quantity of :mod:`onnxrecede.engine.cost` shrinks by the kept fraction of the
channel axes it spans (asked of the op's rule, ``cost_axes``, over the analysis' channel views):

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
from onnxrecede.engine.registry import Rule, rule_for


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


#: the cost axes of an op without a rule (the registry's defaults)
_NO_RULE = Rule()


def build_cost_model(analysis: Analysis, before: cost_mod.Cost) -> CostModel:
    """Terms of ``analysis.model`` (not yet rewritten), aligned with ``before.per_node``."""
    nodes = list(ir.traversal.RecursiveGraphIterator(analysis.model.graph))
    macs: list[Term] = []
    params: list[Term] = []
    seen: set[int] = set()
    view_of = analysis.ctx.view
    for node, counted in zip(nodes, before.per_node):
        rule = rule_for(node) or _NO_RULE
        if counted.macs:
            macs.append(Term(counted.macs, rule.cost_axes(node, None, view_of)))
        for i, numel in cost_mod.parameter_inputs(node, seen):
            params.append(Term(numel, rule.cost_axes(node, i, view_of)))
    return CostModel(macs, params, before.macs, before.params)
