"""The Python API: :func:`prune` and :func:`inspect`, mirroring the command line."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from onnxrecede.engine import registry
from onnxrecede.engine.analysis import Analysis, ChannelGroup, analyze
from onnxrecede.engine.branches import Branch, branch_constants, find_branches, remove_branches
from onnxrecede.engine.budget import build_cost_model
from onnxrecede.engine.cost import count_cost
from onnxrecede.engine.plan import Plan, Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.engine.verify import VerifyReport
from onnxrecede.engine.verify import verify as run_verification
from onnxrecede.errors import InputError
from onnxrecede.importance.file_format import Importances, load_importances, resolve_importances
from onnxrecede.io import stream as streamio
from onnxrecede.io.model_files import ModelSource, load_model, write_model_files
from onnxrecede.io.outputs import Outputs
from onnxrecede.policy.latency import LatencyTarget
from onnxrecede.policy.latency_target import MEASURE_SECONDS, latency_target, measure_cut
from onnxrecede.repair.steps import CutRepair, RepairOptions
from onnxrecede.report.reports import GroupSummary, InspectReport, PruneReport, why_nothing_removed
from onnxrecede.runtime.session import check_shape_specs, check_tolerances

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: prune_file's verification step: (pruned, masked, input_shapes, atol, rtol) -> VerifyReport
_Finish = Callable[[ir.Model, "ir.Model | None", "Mapping[str, Sequence[int]] | None", float, float], VerifyReport]
ImportancesSource = Any  # path, mapping or Importances

#: op types whose removed output channels are reported per node (asked of their rules)
REPORTED_PRODUCERS = registry.reported_ops()


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


def _remove_branches(
    analysis: Analysis,
    cut: list[Branch],
    masked: ir.Model | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
) -> list[dict[str, Any]]:
    """Residual branches whose inner group lost every channel go (engine.branches, case 3)."""
    if not cut:
        return []
    assert masked is not None
    constants = branch_constants(masked, cut, input_shapes)
    return remove_branches(analysis, cut, constants)


def _removed_channels(analysis: Analysis, keep_element: np.ndarray) -> dict[str, list[int]]:
    removed: dict[str, list[int]] = {}
    for node, view in analysis.ctx.channel_outputs.items():
        if node.op_type not in REPORTED_PRODUCERS or node.graph is None:
            continue  # not a producer, or gone with its residual branch
        gone = np.flatnonzero(~keep_element[view.labels])
        if len(gone):
            removed[node.name or f"{node.op_type}@{id(node)}"] = [int(i) for i in gone]
    return removed


def _choose_plan(
    analysis: Analysis,
    scores: dict[ir.Value, tuple[str, np.ndarray]],
    base: Policy,
    ratio: float | str | None,
    target_macs: float | None,
    target_params: float | None,
    before: Any,
    latency: LatencyTarget | None = None,
    whole_groups: frozenset[int] = frozenset(),
) -> tuple[Plan, Policy, dict[str, Any]]:
    """The plan for a fixed policy, ``ratio="auto"``, a MAC / params or a latency target."""
    from onnxrecede.policy import targets

    if latency is not None:
        from onnxrecede.policy.latency import search_latency

        chosen = search_latency(analysis, scores, base, latency, whole_groups)
        return chosen.plan, chosen.policy, chosen.report

    if ratio == "auto":
        cut = targets.auto_threshold(
            targets.prunable_importances(analysis, scores, base.aggregate)
        )
        if base.scope == "local":
            policy = dataclasses.replace(base, ratio=cut.fraction_below, threshold=None)
        else:
            policy = dataclasses.replace(base, ratio=None, threshold=cut.threshold)
        logger.info(
            "ratio auto: threshold %.6g at the valley between modes %.4g and %.4g "
            "(Ashman's D %.2f); %.1f%% of the prunable channels lie below it",
            cut.threshold, cut.means[0], cut.means[1], cut.separation,
            100 * cut.fraction_below,
        )  # fmt: skip
        plan = make_plan(analysis, scores, policy, whole_groups=whole_groups)
        return plan, policy, {"auto": cut.to_dict()}
    if target_macs is not None or target_params is not None:
        metric, fraction = ("macs", target_macs) if target_macs is not None else ("params", target_params)
        assert fraction is not None
        result = targets.search_target(
            analysis, scores, base, build_cost_model(analysis, before), metric, fraction
        )
        return result.plan, result.policy, {
            f"target_{metric}": fraction,
            "search": {"metric": metric, "estimate_macs": result.estimate[0],
                       "estimate_params": result.estimate[1], "steps": result.steps,
                       "kept_below_threshold": result.skipped_channels},
        }  # fmt: skip
    return make_plan(analysis, scores, base, whole_groups=whole_groups), base, {}


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
        removable_branches=[b.to_dict() for b in find_branches(analysis)],
    )


def prune(
    model: ModelSource,
    importances: ImportancesSource,
    *,
    ratio: float | Literal["auto"] | None = None,
    threshold: float | None = None,
    scope: str = "global",
    aggregate: str = "max",
    min_channels: int = 1,
    round_to: int = 1,
    target_macs: float | None = None,
    target_params: float | None = None,
    target_speedup: float | None = None,
    speedup_search: Mapping[str, Any] | None = None,
    latency_table: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    target_latency: float | None = None,
    verify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    progress: Progress | None = None,
    repair: RepairOptions | None = None,
    _finish: _Finish | None = None,
) -> tuple[ir.Model, PruneReport]:
    """Remove unimportant channels from ``model``; returns the pruned model and a report.

    How much is removed, exactly one of (``ratio=0.5`` when none is given):

    - ``ratio``: the fraction of scored prunable channels removed, globally or per group
      (``scope="local"``); ``"auto"`` thresholds at the valley of bimodal importances;
    - ``threshold``: remove channels whose importance is below it;
    - ``target_macs`` / ``target_params``: keep at most this fraction of the MACs / params;
    - ``target_speedup``: the smallest cut measured (ONNX Runtime, CPU) to run this much faster
      (``speedup_search``: ``rounds``, ``seconds``, ``threads``, ``batch``); with
      ``latency_table``, the table's prediction instead of trial runs (``1 / target_speedup``);
    - ``target_latency`` F with ``latency_table`` (``onnxrecede latency``): keep at most F of
      the original latency, each group's kept count chosen by a knapsack over the measured
      steps (:mod:`onnxrecede.policy.latency`); the cut is measured once afterwards.

    ``round_to`` N makes every pruned group keep a multiple of N channels. The input is never
    modified. With ``verify`` (default) the result is checked (checker, per-op consistency, an
    ONNX Runtime run, equality with the masked reference) and :class:`VerificationError` is
    raised on failure. Verification writes the pruned model and the masked reference to scratch
    files and runs them one at a time (see :mod:`onnxrecede.engine.verify` for the tolerance
    rule); :func:`prune_file` prunes straight to a file with less memory.
    """
    check_tolerances(atol, rtol)
    given = [
        name
        for name, v in (
            ("--ratio", ratio), ("--threshold", threshold), ("--target-macs", target_macs),
            ("--target-params", target_params), ("--target-speedup", target_speedup),
            ("--target-latency", target_latency),
        )
        if v is not None
    ]  # fmt: skip
    if len(given) > 1:
        raise InputError(f"give only one of {', '.join(given)}")
    latency = latency_target(latency_table, target_latency, target_speedup)
    if target_speedup is not None and latency is None:
        from onnxrecede.policy.speedup import prune_to_speedup

        return prune_to_speedup(
            model, importances, target_speedup, scope=scope, aggregate=aggregate,
            min_channels=min_channels, round_to=round_to, verify=verify,
            input_shapes=input_shapes, atol=atol, rtol=rtol, progress=progress,
            repair=repair, **dict(speedup_search or {}),
        )  # fmt: skip
    if isinstance(ratio, str) and ratio != "auto":
        raise InputError(f"ratio must be a number in [0, 1) or 'auto', got '{ratio}'")
    if ratio == "auto" or target_macs is not None or target_params is not None or latency:
        base = Policy(None, 0.0, scope, aggregate, min_channels, round_to)  # chosen below
    else:
        if ratio is None and threshold is None:
            ratio = 0.5
        base = Policy(ratio, threshold, scope, aggregate, min_channels, round_to)
    base.validate()
    imp = load_importances(importances)
    m = load_model(model)
    check_shape_specs([(v.name or "", list(v.shape or [])) for v in m.graph.inputs], input_shapes)
    analysis = analyze(m, progress)
    before = count_cost(m, input_shapes)  # after analysis: the same shape inference as "after"
    scores = _scores(m, imp)
    unused = [key for value, (key, _) in scores.items() if analysis.ctx.view(value) is None]
    for key in unused:
        logger.warning("importances key '%s' names channels that are not tracked; ignored", key)
    repairer = CutRepair(repair, progress) if repair is not None and repair.active else None
    branches = find_branches(analysis) if repairer is None else []
    plan, policy, chosen = _choose_plan(
        analysis, scores, base, ratio, target_macs, target_params, before, latency,
        frozenset(g for b in branches for g in b.groups),
    )  # fmt: skip
    cut = [b for b in branches if plan.removed_groups & set(b.groups)]
    groups = _summaries(analysis, plan)
    masked = mask_consumers(analysis, plan.keep_element, lazy=True) if verify or cut else None
    if repairer is not None:  # compensation / reconstruction (onnxrecede.repair)
        masked = repairer.before_rewrite(analysis, plan.keep_element, masked)
    reference = m.clone() if latency is not None else None  # measured against the cut below
    blocks = _remove_branches(analysis, cut, masked, input_shapes)
    removed = _removed_channels(analysis, plan.keep_element)
    rewrite(analysis, plan.keep_element, progress)
    if repairer is not None:
        repairer.after_rewrite(m)
    after = count_cost(m, input_shapes)
    verification = None
    if verify:
        if progress is not None:
            progress("verify", 0, 1)
        check = _finish if _finish is not None else run_verification
        verification = check(m, masked, input_shapes, atol, rtol).to_dict()
        if repairer is not None:
            repairer.note_verification(verification)
        if progress is not None:
            progress("verify", 1, 1)
    if reference is not None and latency is not None:
        seconds = (speedup_search or {}).get("seconds", MEASURE_SECONDS)
        chosen["latency"].update(measure_cut(reference, m, latency.table, float(seconds)))
        del reference
    prunable = sum(g.size for g in groups if g.status in ("pruned", "kept"))
    report = PruneReport(
        policy={
            "ratio": ratio if ratio == "auto" else policy.ratio,
            "threshold": policy.threshold,
            "scope": scope,
            "aggregate": aggregate,
            "min_channels": min_channels,
            "round_to": round_to,
            **chosen,
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
        nothing_removed=why_nothing_removed(groups, min_channels),
        repair=repairer.report() if repairer is not None else None,
        blocks_removed=blocks,
    )
    if report.nothing_removed:
        logger.warning("warning: nothing was removed: %s", report.nothing_removed)
    return m, report


def prune_file(
    model: ModelSource,
    importances: ImportancesSource,
    output: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    verify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    progress: Progress | None = None,
    **options: Any,
) -> PruneReport:
    """Prune ``model`` into the file ``output``; ``options`` are :func:`prune`'s policy arguments.

    Weights go to ``output + ".data"`` with ``external_data=True``, or when they exceed 2 GB
    (``None``). Made for models that barely fit in memory: large weights are read from the input
    file as needed, the result is streamed to a scratch folder beside ``output`` and dropped from
    memory, then verified from the file written (checker, consistency, an ONNX Runtime run, the
    masked reference, written to that folder too), and only then moved to ``output`` (and
    ``output.data``). On :class:`VerificationError`, or any other error, nothing is left at
    ``output`` and the scratch folder is removed. Returns the report (``report.output`` set).
    """
    check_tolerances(atol, rtol)
    target = Path(os.fspath(output))
    with Outputs() as outputs:
        outputs.staged(f"{target}.data")  # moved into place only if written
        staged = outputs.staged(target)
        written: list[Path] = []

        def write_and_verify(
            pruned: ir.Model,
            masked: ir.Model | None,
            shapes: Mapping[str, Sequence[int]] | None,
            a: float,
            r: float,
        ) -> VerifyReport:
            written.extend(_write_staged(outputs, target, pruned, external_data))
            _release_weights(pruned, staged)
            return run_verification(staged, masked, shapes, a, r, scratch=staged.parent)

        pruned, report = prune(
            model, importances, verify=verify, input_shapes=input_shapes, atol=atol, rtol=rtol,
            progress=progress, _finish=write_and_verify, **options,
        )  # fmt: skip
        if not written:  # not verified, or verified in memory (--target-speedup)
            _write_staged(outputs, target, pruned, external_data)
        del pruned
        outputs.commit()  # the data file first, the model last
    report.output = os.fspath(target)
    return report


def _write_staged(
    outputs: Outputs, target: Path, model: ir.Model, external_data: bool | None
) -> list[Path]:
    return outputs.write(target, lambda staged: write_model_files(model, staged, external_data))


def _release_weights(model: ir.Model, path: Path) -> None:
    """Point ``model``'s large weights at the file just written, freeing their memory."""
    written = streamio.load(path)
    for name, value in model.graph.initializers.items():
        other = written.graph.initializers.get(name)
        tensor = other.const_value if other is not None else None
        if isinstance(tensor, (streamio.FileTensor, ir.ExternalTensor)):
            value.const_value = tensor
    gc.collect()

