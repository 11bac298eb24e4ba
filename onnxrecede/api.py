"""The Python API: :func:`prune` and :func:`inspect`, mirroring the command line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.cost import count_cost
from onnxrecede.engine.analysis import Analysis, ChannelGroup, analyze
from onnxrecede.engine.plan import Plan, Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.engine.verify import verify as run_verification
from onnxrecede.importances import Importances, load_importances, resolve_importances
from onnxrecede.model_io import ModelSource, load_model
from onnxrecede.reports import GroupSummary, InspectReport, PruneReport

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
ImportancesSource = Any  # path, mapping or Importances

REPORTED_PRODUCERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _scores(model: ir.Model, imp: Importances) -> dict[ir.Value, tuple[str, np.ndarray]]:
    resolved = resolve_importances(model, imp)
    return {r.value: (key, imp.scores[key]) for key, r in resolved.items()}


def _summaries(analysis: Analysis, plan: Plan | None) -> list[GroupSummary]:
    out = []
    for g in analysis.groups:
        if not g.producers:
            continue  # pad blocks and constants alone: nothing to report
        out.append(_summary(g, plan))
    return out


def _summary(g: ChannelGroup, plan: Plan | None) -> GroupSummary:
    imp = None
    removed = 0
    if plan is not None:
        vals = [plan.class_importance[int(r)] for r in g.classes if int(r) in plan.class_importance]
        if vals:
            imp = {
                "min": float(np.min(vals)),
                "median": float(np.median(vals)),
                "max": float(np.max(vals)),
                "scored": len(vals),
            }
        removed = plan.removed_per_group.get(g.id, 0)
    if g.barriers:
        status = "blocked"
    elif removed:
        status = "pruned"
    elif plan is not None and g.id in plan.scored_groups:
        status = "kept"
    else:
        status = "unscored"
    return GroupSummary(
        id=g.id,
        size=g.size,
        status=status,
        removed=removed,
        producers=list(g.producers),
        members=list(g.members),
        barriers=[b.to_dict() for b in g.barriers],
        importance=imp,
    )


def _removed_channels(analysis: Analysis, keep_element: np.ndarray) -> dict[str, list[int]]:
    removed: dict[str, list[int]] = {}
    for node, view in analysis.ctx.channel_outputs.items():
        if node.op_type not in REPORTED_PRODUCERS:
            continue
        gone = np.flatnonzero(~keep_element[view.labels])
        if len(gone):
            removed[node.name or f"{node.op_type}@{id(node)}"] = [int(i) for i in gone]
    return removed


def inspect(model: ModelSource, importances: ImportancesSource | None = None) -> InspectReport:
    """Channel groups of a model, their members, barriers and (optionally) importances."""
    m = load_model(model)
    analysis = analyze(m)
    cost = count_cost(m)
    plan = None
    if importances is not None:
        imp = load_importances(importances)
        plan = make_plan(analysis, _scores(m, imp), Policy(ratio=0.0))
    return InspectReport(
        groups=_summaries(analysis, plan),
        barriers=[b.to_dict() for b in analysis.barriers],
        params=cost.params,
        macs=cost.macs,
    )


def prune(
    model: ModelSource,
    importances: ImportancesSource,
    *,
    ratio: float | None = None,
    threshold: float | None = None,
    scope: str = "global",
    aggregate: str = "max",
    min_channels: int = 1,
    verify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    progress: Progress | None = None,
) -> tuple[ir.Model, PruneReport]:
    """Remove unimportant channels from ``model``; returns the pruned model and a report.

    ``ratio`` (default 0.5 when no ``threshold`` is given) is the fraction of scored prunable
    channels removed, globally or per group (``scope="local"``). The input is never modified.
    With ``verify`` (default) the result is checked (checker, per-op consistency, an ONNX
    Runtime run, equality with the masked reference) and :class:`VerificationError` is raised
    on failure.
    """
    if ratio is None and threshold is None:
        ratio = 0.5
    policy = Policy(ratio, threshold, scope, aggregate, min_channels)
    policy.validate()
    imp = load_importances(importances)
    m = load_model(model)
    analysis = analyze(m, progress)
    before = count_cost(m, input_shapes)  # after analysis: the same shape inference as "after"
    scores = _scores(m, imp)
    unused = [key for value, (key, _) in scores.items() if analysis.ctx.view(value) is None]
    for key in unused:
        logger.warning("importances key '%s' names channels that are not tracked; ignored", key)
    plan = make_plan(analysis, scores, policy)
    removed = _removed_channels(analysis, plan.keep_element)
    groups = _summaries(analysis, plan)
    masked = mask_consumers(analysis, plan.keep_element) if verify else None
    rewrite(analysis, plan.keep_element, progress)
    after = count_cost(m, input_shapes)
    verification = None
    if verify:
        if progress is not None:
            progress("verify", 0, 1)
        verification = run_verification(m, masked, input_shapes, atol, rtol).to_dict()
        if progress is not None:
            progress("verify", 1, 1)
    prunable = sum(g.size for g in groups if g.status in ("pruned", "kept"))
    report = PruneReport(
        policy={
            "ratio": ratio,
            "threshold": threshold,
            "scope": scope,
            "aggregate": aggregate,
            "min_channels": min_channels,
        },
        removed_channels=removed,
        groups=groups,
        channels_prunable=prunable,
        channels_removed=sum(g.removed for g in groups),
        params_before=before.params,
        params_after=after.params,
        macs_before=before.macs,
        macs_after=after.macs,
        verification=verification,
        restored_for_minimum=plan.restored,
        unused_keys=unused,
    )
    return m, report
