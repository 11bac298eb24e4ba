"""The Python API: :func:`prune` and :func:`inspect`, mirroring the command line."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from onnxrecede.bench import BenchOptions, compare
from onnxrecede.data.sources import Samples, input_specs, open_samples
from onnxrecede.engine import registry
from onnxrecede.engine.analysis import Analysis, ChannelGroup, analyze
from onnxrecede.engine.attention import attention_blocks
from onnxrecede.engine.attention import removed_units as attention_units
from onnxrecede.engine.branches import Branch, branch_constants, find_branches, remove_branches
from onnxrecede.engine.cost import count_cost
from onnxrecede.engine.plan import Plan, Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.engine.verify import VERIFY_SAMPLES, VerifyReport, stage
from onnxrecede.engine.verify import verify as run_verification
from onnxrecede.errors import InputError
from onnxrecede.importance.file_format import load_importances, scores_by_value
from onnxrecede.io import stream as streamio
from onnxrecede.io.model_files import ModelSource, load_model, write_model_files
from onnxrecede.io.outputs import Outputs
from onnxrecede.io.paths import check_paths, data_reads, prune_file_paths
from onnxrecede.policy.choose import PlanRequest, choose_plan, choose_scores
from onnxrecede.policy.latency_target import MEASURE_SECONDS, measure_cut
from onnxrecede.progress import Progress
from onnxrecede.repair.steps import CutRepair, RepairOptions
from onnxrecede.report.reports import GroupSummary, InspectReport, PruneReport, why_nothing_removed
from onnxrecede.runtime.accuracy import EvalOptions, compare_accuracy
from onnxrecede.runtime.session import check_shape_specs, check_tolerances

logger = logging.getLogger(__name__)

#: prune_file's verification step: (pruned, masked, input_shapes, atol, rtol, samples) -> report
_Finish = Callable[
    [ir.Model, "ir.Model | None", "Mapping[str, Sequence[int]] | None", float, float,
     "Samples | None"],
    VerifyReport,
]  # fmt: skip
ImportancesSource = Any  # path, mapping or Importances

#: op types whose removed output channels are reported per node (asked of their rules)
REPORTED_PRODUCERS = registry.reported_ops()


_scores = scores_by_value  # the old private name (tests, one release)


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
    for node, view in analysis.channel_outputs.items():
        if node.op_type not in REPORTED_PRODUCERS or node.graph is None:
            continue  # not a producer, or gone with its residual branch
        gone = np.flatnonzero(~keep_element[view.labels])
        if len(gone):
            removed[node.name or f"{node.op_type}@{id(node)}"] = [int(i) for i in gone]
    return removed


def inspect(
    model: ModelSource,
    importances: ImportancesSource | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    head_units: str = "heads",
) -> InspectReport:
    """Channel groups of a model, their members, barriers and (optionally) importances.

    ``input_shapes`` binds inputs' dynamic dims for the analysis and the cost (``--shape``);
    ``head_units``: attention blocks are grouped by whole ``heads`` or by head ``dims``.
    """
    m = load_model(model)
    check_shape_specs([(v.name or "", list(v.shape or [])) for v in m.graph.inputs], input_shapes)
    analysis = analyze(m, None, input_shapes, head_units=head_units)
    cost = count_cost(m, input_shapes)
    plan = None
    if importances is not None:
        imp = load_importances(importances)
        plan = make_plan(analysis, scores_by_value(m, imp), Policy(ratio=0.0))
    return InspectReport(
        groups=_summaries(analysis, plan),
        barriers=[b.to_dict() for b in analysis.barriers],
        params=cost.params,
        macs=cost.macs,
        attention=attention_blocks(analysis),
        removable_branches=[b.to_dict() for b in find_branches(analysis)],
    )


def prune(
    model: ModelSource,
    importances: ImportancesSource | None,
    *,
    ratio: float | Literal["auto"] | None = None,
    threshold: float | None = None,
    scope: str = "global",
    aggregate: str = "max",
    min_channels: int = 1,
    round_to: int = 1,
    head_units: str = "heads",
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
    verify_data: Samples | str | os.PathLike[str] | None = None,
    allocate: str = "importances",
    target_accuracy_drop: float | None = None,
    accuracy_search: Mapping[str, Any] | None = None,
    evaluation: EvalOptions | None = None,
    _finish: _Finish | None = None,
) -> tuple[ir.Model, PruneReport]:
    """Remove unimportant channels from ``model``; returns the pruned model and a report.

    ``importances=None`` chooses the channels from ``repair.calibration`` (what removing each
    costs its consumers after a least-squares refit: :mod:`onnxrecede.importance.selection`) and
    reconstructs the cut on the same samples. ``allocate="sensitivity"`` keeps the order of
    ``importances`` inside each layer but lets those data costs decide how many channels each
    layer loses (:func:`onnxrecede.importance.selection.allocate_by_sensitivity`); it
    reconstructs too (see :func:`onnxrecede.policy.choose.choose_scores`).

    How much is removed, exactly one of (``ratio=0.5`` when none is given):

    - ``ratio``: the fraction of scored prunable channels removed, globally or per group
      (``scope="local"``); ``"auto"`` thresholds at the valley of bimodal importances;
    - ``threshold``: remove channels whose importance is below it;
    - ``target_macs`` / ``target_params``: keep at most this fraction of the MACs / params;
    - ``target_speedup``: the smallest cut measured (ONNX Runtime, CPU) to run this much faster
      (``speedup_search``: ``rounds``, ``seconds``, ``threads``, ``batch``);
    - ``target_accuracy_drop``: the largest MAC cut whose top-1 drop, measured on
      ``evaluation``'s labelled samples (:class:`~onnxrecede.runtime.accuracy.EvalOptions`) after
      the same repair, stays within this many points (``accuracy_search``: ``steps``,
      ``floor``; :mod:`onnxrecede.policy.accuracy_search`); :class:`AccuracyDropError` (exit 6)
      when no cut tried does.
    - ``target_speedup`` with
      ``latency_table``, the table's prediction instead of trial runs (``1 / target_speedup``);
    - ``target_latency`` F with ``latency_table`` (``onnxrecede latency``): keep at most F of
      the original latency, each group's kept count chosen by a knapsack over the measured
      steps (:mod:`onnxrecede.policy.latency`); the cut is measured once afterwards.

    ``round_to`` N makes every pruned group keep a multiple of N channels. ``head_units``:
    attention blocks lose whole ``heads`` (default) or the same ``dims`` of every head. The input is never
    modified. With ``verify`` (default) the result is checked (checker, per-op consistency, an
    ONNX Runtime run, equality with the masked reference) and :class:`VerificationError` is
    raised on failure. Verification runs on real samples when there are some: ``verify_data``
    (a data source or :class:`~onnxrecede.data.Samples`), else the repair's calibration data;
    else on seeded random inputs. Verification writes the pruned model and the masked reference to scratch
    files and runs them one at a time (see :mod:`onnxrecede.engine.verify` for the tolerance
    rule); :func:`prune_file` prunes straight to a file with less memory.
    """
    request = PlanRequest(ratio, threshold, scope, aggregate, min_channels, round_to,
                          target_macs, target_params, target_speedup, speedup_search,
                          target_accuracy_drop, accuracy_search, evaluation, allocate,
                          latency_table, target_latency)  # fmt: skip
    check_tolerances(atol, rtol)
    request.base_policy()  # every check before any loading
    request.check_sources(importances is not None, repair)
    if repair is not None:
        repair.validate()
    # load
    imp = load_importances(importances) if importances is not None else None
    stage("load")
    m = load_model(model)
    check_shape_specs([(v.name or "", list(v.shape or [])) for v in m.graph.inputs], input_shapes)
    stage("analyse")
    # analyse (``input_shapes`` binds dynamic dims for the analysis too)
    analysis = analyze(m, progress, input_shapes, head_units=head_units)
    before = count_cost(m, input_shapes)  # after analysis: the same shape inference as "after"
    # score (importances, or channel costs from calibration data: then reconstructed)
    scores, repair = choose_scores(analysis, imp, request, repair, progress)
    unused = _unused_keys(analysis, scores)
    stage("plan")
    repairer = CutRepair(repair, progress) if repair is not None and repair.active else None
    # residual branches that may go whole (not with repair: it fits the layers they hold)
    branches = find_branches(analysis) if repairer is None else []
    # choose the plan
    choice = choose_plan(
        analysis, scores, request, before, input_shapes, progress, repair,
        whole_groups=frozenset(g for b in branches for g in b.groups),
    )  # fmt: skip
    keep = choice.plan.keep_element
    cut = [b for b in branches if choice.plan.removed_groups & set(b.groups)]
    groups = _summaries(analysis, choice.plan)
    units = attention_units(analysis, keep)
    # repair before (compensation / reconstruction, onnxrecede.repair)
    masked = mask_consumers(analysis, keep, lazy=True) if verify or cut else None
    if masked is not None:
        streamio.read_unmapped(masked)  # or it pins every input page the rewrite reads
    if repairer is not None:
        masked = repairer.before_rewrite(analysis, keep, masked)
    latency = request.latency
    reference = m.clone() if latency is not None else None  # measured against the cut below
    stage("rewrite")
    # rewrite: whole residual branches first, then the channels
    blocks = _remove_branches(analysis, cut, masked, input_shapes)
    removed = _removed_channels(analysis, keep)
    rewrite(analysis, keep, progress)
    # repair after
    if repairer is not None:
        repairer.after_rewrite(m)
    after = count_cost(m, input_shapes)
    # verify
    verification = None
    if verify:
        samples = _verify_samples(m, verify_data, repairer)
        check = _finish if _finish is not None else _verify_in_memory
        verification = _verify(
            lambda: check(m, masked, input_shapes, atol, rtol, samples), repairer, progress
        )
    section = choice.section
    if reference is not None and latency is not None:  # the cut measured once
        seconds = float((speedup_search or {}).get("seconds", MEASURE_SECONDS))
        section = section.measured_latency(measure_cut(reference, m, latency.table, seconds))
        del reference
    # report
    report = PruneReport(
        policy=section,
        removed_channels=removed,
        groups=groups,
        channels_prunable=sum(g.size for g in groups if g.status in ("pruned", "kept")),
        channels_removed=sum(g.removed for g in groups),
        params_before=before.params,
        params_after=after.params,
        macs_before=before.macs,
        macs_after=after.macs,
        verification=verification,
        restored_for_minimum=choice.plan.restored,
        unused_keys=unused,
        nothing_removed=why_nothing_removed(groups, min_channels),
        repair=repairer.report() if repairer is not None else None,
        removed_heads=units.get("heads", {}),
        removed_head_dims=units.get("dims", {}),
        blocks_removed=blocks,
    )
    if report.nothing_removed:
        logger.warning("warning: nothing was removed: %s", report.nothing_removed)
    return m, report


def _unused_keys(analysis: Analysis, scores: Mapping[ir.Value, tuple[str, np.ndarray]]) -> list[str]:
    unused = [key for value, (key, _) in scores.items() if analysis.view(value) is None]
    for key in unused:
        logger.warning("importances key '%s' names channels that are not tracked; ignored", key)
    return unused


def _verify(
    check: Callable[[], VerifyReport], repairer: CutRepair | None, progress: Progress | None
) -> dict[str, Any]:
    if progress is not None:
        progress("verify", 0, 1)
    result = check()
    if repairer is not None:
        result = repairer.verified(result)
    if progress is not None:
        progress("verify", 1, 1)
    return result.to_dict()


def prune_file(
    model: ModelSource,
    importances: ImportancesSource | None,
    output: str | os.PathLike[str],
    *,
    external_data: bool | None = None,
    verify: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    progress: Progress | None = None,
    evaluation: EvalOptions | None = None,
    bench: BenchOptions | bool | None = None,
    fail_below: float | None = None,
    gates: bool = True,
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

    Measured on the file written, before it is moved into place (as ``prune --bench
    --eval-data`` does): ``bench`` (True or :class:`~onnxrecede.bench.BenchOptions`) times it
    against ``model`` on CPU (``report.bench``); ``evaluation``
    (:class:`~onnxrecede.runtime.accuracy.EvalOptions`) compares the accuracy
    (``report.accuracy``). With ``gates`` (default), once the output is in place,
    ``fail_below`` raises :class:`~onnxrecede.bench.SpeedupBelowBarError` (exit 5) and
    ``evaluation.max_drop`` :class:`AccuracyDropError` (exit 6); ``gates=False`` leaves that to
    the caller (:meth:`PruneReport.check_gates`). With ``target_accuracy_drop`` the search
    evaluates its candidates on ``evaluation`` too.

    Before any work, the command line's output-safety rule (:func:`onnxrecede.io.paths.check_paths`):
    :class:`InputError` when ``output`` or ``output.data`` is the model, its external data, the
    importances, calibration or evaluation data, or is not a regular file, or its folder is not writable.
    """
    check_tolerances(atol, rtol)
    repair = options.get("repair")
    reads, writes = prune_file_paths(model, importances, output, getattr(repair, "calibration", None))
    if evaluation is not None:
        reads.extend(data_reads(evaluation.data, "the evaluation data"))
    if isinstance(options.get("latency_table"), (str, os.PathLike)):
        reads.append(("the latency table", options["latency_table"]))
    check_paths(reads, writes)
    bench_options = _bench_options(bench, fail_below, input_shapes)
    if evaluation is not None:
        evaluation.validate()
    if verify and evaluation is not None and options.get("verify_data") is None:
        # verification runs on real samples: the evaluation data's first ones
        options["verify_data"] = open_samples(
            evaluation.data, input_specs(model), image=evaluation.image, limit=VERIFY_SAMPLES
        )
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
            samples: Samples | None,
        ) -> VerifyReport:
            stage("write")
            written.extend(_write_staged(outputs, target, pruned, external_data))
            stage("release weights")
            _release_weights(pruned, staged)
            return run_verification(
                staged, masked, shapes, a, r, scratch=staged.parent, samples=samples
            )

        pruned, report = prune(
            model, importances, verify=verify, input_shapes=input_shapes, atol=atol, rtol=rtol,
            progress=progress, evaluation=evaluation, _finish=write_and_verify, **options,
        )  # fmt: skip
        if not written:  # not verified, or verified in memory (--target-speedup)
            stage("write")
            _write_staged(outputs, target, pruned, external_data)
        del pruned
        _measure_written(report, model, staged, bench_options, evaluation, progress)
        report.fail_below = fail_below
        outputs.commit()  # the data file first, the model last
    report.output = os.fspath(target)
    if gates:
        report.check_gates()
    return report


def _bench_options(
    bench: BenchOptions | bool | None,
    fail_below: float | None,
    input_shapes: Mapping[str, Sequence[int]] | None,
) -> BenchOptions | None:
    if fail_below is not None and not bench:
        raise InputError("--fail-below needs --bench")
    if bench is None or bench is False:
        return None
    if bench is True:
        shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
        return BenchOptions(shapes=shapes)
    return bench


def _measure_written(
    report: PruneReport,
    model: ModelSource,
    written: Path,
    bench: BenchOptions | None,
    evaluation: EvalOptions | None,
    progress: Progress | None,
) -> None:
    """``report.bench`` and ``report.accuracy`` of the file written against ``model``."""
    if bench is not None:
        if not isinstance(model, (str, os.PathLike)):
            raise InputError("bench needs the original model as a file path")
        report.bench = compare(model, written, bench)
    if evaluation is not None:
        report.accuracy = compare_accuracy(model, written, evaluation, progress)


def _verify_in_memory(
    pruned: ir.Model,
    masked: ir.Model | None,
    shapes: Mapping[str, Sequence[int]] | None,
    atol: float,
    rtol: float,
    samples: Samples | None,
) -> VerifyReport:
    return run_verification(pruned, masked, shapes, atol, rtol, samples=samples)


def _verify_samples(
    model: ir.Model,
    source: Samples | str | os.PathLike[str] | None,
    repairer: CutRepair | None,
) -> Samples | None:
    """The real samples verification runs on: ``source``, else the calibration data."""
    if isinstance(source, Samples):
        return source
    if source is not None:
        return open_samples(source, input_specs(model), limit=VERIFY_SAMPLES)
    return repairer.samples if repairer is not None else None


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
            replaced = value.const_value
            value.const_value = tensor
            if isinstance(replaced, ir.ExternalTensor):  # the input's external data: unmap it
                streamio.release_tensor(replaced)
    gc.collect()

