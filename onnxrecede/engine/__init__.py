"""The engine: channel analysis, plans, rewrite, verification and cost, driven by op rules.

The stages, in the order ``prune`` runs them:

1. :func:`analyze` -> :class:`Analysis` (coupled channel groups, barriers);
2. :func:`make_plan` -> :class:`Plan` (which channels to keep, for a :class:`Policy`);
3. :func:`mask_consumers` (the masked reference), then ``rewrite.rewrite`` (in place) or
   :func:`pruned_copy` (a rewritten copy, for searches);
4. ``verify.verify`` -> :class:`VerifyReport`; :func:`count_cost` / :func:`build_cost_model`.

(``rewrite`` and ``verify`` name their modules here; their functions live inside them.)

What each op does is asked of its rule (:mod:`onnxrecede.engine.registry`, one module per op
family in :mod:`onnxrecede.engine.rules`).
"""

from __future__ import annotations

from onnxrecede.engine.analysis import Analysis, BarrierInfo, ChannelGroup, analyze
from onnxrecede.engine.budget import CostModel, build_cost_model
from onnxrecede.engine.cost import Cost, count_cost
from onnxrecede.engine.plan import Plan, Policy, make_plan
from onnxrecede.engine.registry import Rule, register, rule_for
from onnxrecede.engine.rewrite import mask_consumers, pruned_copy
from onnxrecede.engine.verify import VerifyReport

__all__ = [
    "Analysis",
    "BarrierInfo",
    "ChannelGroup",
    "Cost",
    "CostModel",
    "Plan",
    "Policy",
    "Rule",
    "VerifyReport",
    "analyze",
    "build_cost_model",
    "count_cost",
    "make_plan",
    "mask_consumers",
    "pruned_copy",
    "register",
    "rule_for",
]
