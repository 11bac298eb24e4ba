"""What prune and inspect return: plain dataclasses with ``to_dict`` and a text table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onnxrecede.report.sections import Section


@dataclass
class GroupSummary:
    id: int
    size: int
    status: str  # "pruned" | "kept" | "blocked" | "unscored"
    removed: int
    producers: list[str]
    members: list[str]
    barriers: list[dict[str, str]]
    importance: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "status": self.status,
            "removed": self.removed,
            "producers": self.producers,
            "members": self.members,
            "barriers": self.barriers,
            "importance": self.importance,
        }


@dataclass
class PruneReport:
    """Result of :func:`onnxrecede.prune`."""

    policy: Mapping[str, Any]  #: a PolicySection (reads as the dict it used to be)
    removed_channels: dict[str, list[int]]
    groups: list[GroupSummary]
    channels_prunable: int
    channels_removed: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    verification: dict[str, Any] | None = None
    restored_for_minimum: int = 0
    unused_keys: list[str] = field(default_factory=list)
    output: str | None = None
    #: why no channel was removed (None when some were)
    nothing_removed: str | None = None
    repair: dict[str, Any] | None = None  # compensation / reconstruction (onnxrecede.repair)
    #: residual branches removed whole (onnxrecede.engine.branches)
    blocks_removed: list[dict[str, Any]] = field(default_factory=list)
    #: ``prune_file(..., bench=...)``: the pruned file timed against the original (BenchResult)
    bench: Any = None
    #: ``prune_file(..., evaluation=...)``: accuracy before and after (AccuracyComparison)
    accuracy: Any = None
    #: ``--fail-below``: the speedup gate on ``bench``
    fail_below: float | None = None
    #: attention blocks (named by their q/k/v projections) -> indices of the heads removed
    removed_heads: dict[str, list[int]] = field(default_factory=dict)
    #: with ``head_units="dims"``: block -> the head dims removed from every head
    removed_head_dims: dict[str, list[int]] = field(default_factory=dict)

    @property
    def groups_pruned(self) -> list[GroupSummary]:
        return [g for g in self.groups if g.status == "pruned"]

    @property
    def groups_blocked(self) -> list[GroupSummary]:
        return [g for g in self.groups if g.status == "blocked"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "policy": self.policy.to_dict() if isinstance(self.policy, Section) else dict(self.policy),
            "removed_channels": self.removed_channels,
            "removed_heads": self.removed_heads,
            "removed_head_dims": self.removed_head_dims,
            "channels": {
                "prunable": self.channels_prunable,
                "removed": self.channels_removed,
                "restored_for_minimum": self.restored_for_minimum,
            },
            "groups_pruned": [g.to_dict() for g in self.groups_pruned],
            "groups_blocked": [g.to_dict() for g in self.groups_blocked],
            "groups_other": [g.to_dict() for g in self.groups if g.status in ("kept", "unscored")],
            "params": {"before": self.params_before, "after": self.params_after},
            "macs": {"before": self.macs_before, "after": self.macs_after},
            "verification": self.verification,
            "unused_keys": self.unused_keys,
            "nothing_removed": self.nothing_removed,
            "repair": self.repair,
            "blocks_removed": self.blocks_removed,
        } | self._measured()

    def _measured(self) -> dict[str, Any]:
        found = {"bench": self.bench, "accuracy": self.accuracy}
        return {k: v.to_dict() for k, v in found.items() if v is not None}

    def check_gates(self) -> None:
        """The gates, after the pruned model is written: ``--fail-below`` (exit 5) on the
        measured speedup, then ``--max-accuracy-drop`` (exit 6) on the accuracy drop."""
        if self.bench is not None and self.fail_below is not None:
            from onnxrecede.bench.gate import check_speedup

            check_speedup(self.bench, self.fail_below)
        if self.accuracy is not None:
            self.accuracy.check()


def why_nothing_removed(groups: list[GroupSummary], min_channels: int) -> str | None:
    """Why a prune removed no channel at all, or None when it removed some."""
    if any(g.removed for g in groups):
        return None
    open_groups = [g for g in groups if g.status in ("pruned", "kept")]
    if not open_groups:
        if any(g.status == "blocked" for g in groups):
            return (
                "every group the importances score is blocked by a barrier "
                "(see the blocked groups and their reasons)"
            )
        return "no importances key scores a prunable group (see `onnxrecede inspect`)"
    largest = max(g.size for g in open_groups)
    if min_channels >= largest:
        return (
            f"--min-channels {min_channels} is at least the size of every prunable group "
            f"(the largest has {largest} channels); lower --min-channels"
        )
    return "the policy selects no channel for these importances; raise --ratio or --threshold"


@dataclass
class InspectReport:
    """Result of :func:`onnxrecede.inspect`."""

    groups: list[GroupSummary]
    barriers: list[dict[str, str]]
    params: int
    macs: int
    #: attention blocks recognised: units (heads or dims), count, status, barriers
    attention: list[dict[str, Any]] = field(default_factory=list)
    #: residual branches that go whole when one of their inner groups loses every channel
    removable_branches: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [g.to_dict() for g in self.groups],
            "barriers": self.barriers,
            "attention": self.attention,
            "params": self.params,
            "macs": self.macs,
            "removable_branches": self.removable_branches,
        }


def _pct(before: int, after: int) -> str:
    return f"{100.0 * (before - after) / before:5.1f}%" if before else "  n/a"


def _human(n: int) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit}" if len(names) > limit else "")


def format_verification_inputs(v: dict[str, Any]) -> list[str]:
    """What verification ran on, the noise floor if measured, and the vacuous checks."""
    lines = []
    inputs = v.get("inputs") or {}
    if inputs:
        lines.append(f"  on {inputs['samples']} sample(s) of {inputs['source']}")
    if v.get("noise_floor_levels"):
        floors = ", ".join(
            f"'{o['name']}' {o['noise_floor']:.2g}"
            for o in v.get("outputs", []) if o.get("noise_floor") is not None
        )  # fmt: skip
        lines.append(
            f"  within the reference's noise floor between optimisation levels "
            f"{', '.join(v['noise_floor_levels'])}: {floors}"
        )
    for o in v.get("outputs", []):
        if o.get("vacuous"):
            lines.append(f"  vacuous check: output '{o['name']}' ({o['vacuous']})")
    return lines


def format_prune(report: PruneReport) -> str:
    lines = ["group  size  removed  producers"]
    for g in report.groups_pruned:
        lines.append(f"{g.id:>5}  {g.size:>4}  {g.removed:>7}  {_names(g.producers)}")
    for g in report.groups_blocked:
        why = g.barriers[0]
        lines.append(
            f"{g.id:>5}  {g.size:>4}  blocked  {_names(g.producers)}  "
            f"[{why['op_type']} '{why['node']}': {why['reason']}]"
        )
    lines.append("")
    lines.append(
        f"channels removed: {report.channels_removed}/{report.channels_prunable} prunable  "
        f"groups: {len(report.groups_pruned)} pruned, {len(report.groups_blocked)} blocked"
    )
    if report.nothing_removed:
        lines.append(f"nothing was removed: {report.nothing_removed}")
    for what, removed in (("heads", report.removed_heads), ("head dims", report.removed_head_dims)):
        for block, units in removed.items():
            lines.append(f"{what} removed from {block}: {units}")
    lines.append(
        f"params: {_human(report.params_before)} -> {_human(report.params_after)} "
        f"(-{_pct(report.params_before, report.params_after).strip()})   "
        f"MACs: {_human(report.macs_before)} -> {_human(report.macs_after)} "
        f"(-{_pct(report.macs_before, report.macs_after).strip()})"
    )
    lines.extend(_branch_lines("residual branches removed", report.blocks_removed))
    lines.extend(format_policy(report))
    if report.repair:
        from onnxrecede.repair.steps import format_repair

        lines.extend(format_repair(report.repair))
    if report.verification:
        v = report.verification
        diff = v.get("max_abs_diff")
        lines.append(
            f"verified: checker {v['checker']}, consistency {v['consistency']}, "
            f"ORT run {v['ort_run']}, masked reference {v['masked_reference']}"
            + (f" (max abs diff {diff:.2g}" if diff is not None else "")
            + (
                f", {v['max_rel_diff']:.2g} of the output scale"
                if diff is not None and v.get("max_rel_diff") is not None
                else ""
            )
            + (")" if diff is not None else "")
        )
        lines.extend(format_verification_inputs(v))
    if report.output:
        lines.append(f"wrote {report.output}")
    return "\n".join(lines)


def format_policy(report: PruneReport) -> list[str]:
    """What an automatic or budgeted policy chose: auto threshold, target reached, curve."""
    p = report.policy
    lines = []
    prunable = max(report.channels_prunable, 1)
    if p.get("latency"):
        from onnxrecede.report.latency import format_latency

        lines.extend(format_latency(p["target_latency"], p["latency"]))
    if p.get("auto"):
        a = p["auto"]
        lines.append(
            f"ratio auto: threshold {a['threshold']:.4g} at the valley between the modes "
            f"{a['means'][0]:.3g} and {a['means'][1]:.3g} (Ashman's D {a['separation']:.2f} > "
            f"{a['min_separation']:g}); removed {report.channels_removed}/{prunable} prunable "
            f"channels ({100 * report.channels_removed / prunable:.1f}%)"
        )
    for metric, before, after in (
        ("macs", report.macs_before, report.macs_after),
        ("params", report.params_before, report.params_after),
    ):
        if p.get(f"target_{metric}") is not None and before:
            where = (
                f"threshold {p['threshold']:.4g}"
                if p.get("threshold") is not None
                else f"ratio {p.get('ratio', 0):.3f} per group"
            )
            lines.append(
                f"target {metric}: at most {p[f'target_{metric}']:g} of the original, reached "
                f"{after / before:.4f} ({where})"
            )
            skipped = p.get("search", {}).get("kept_below_threshold")
            if skipped:
                lines.append(
                    f"  {skipped} channels below the threshold were kept: removing them would "
                    "overshoot the budget by more than 10%"
                )
    search = p.get("speedup_search")
    if search:
        lines.append(f"speedup search ({search['rounds']} rounds, CPU, batch {search['batch']}):")
        lines.append("  MACs    threshold   ms pruned  ms original  speedup")
        for row in search["curve"]:
            thr = "-" if row["threshold"] is None else f"{row['threshold']:.4g}"
            mark = "  <- chosen" if row["target_macs"] == search["chosen_target_macs"] else ""
            lines.append(
                f"  {row['macs_fraction']:.3f}  {thr:>10}  {row['ms_pruned']:>9.3f}  "
                f"{row['ms_reference']:>11.3f}  {row['speedup']:>6.2f}x{mark}"
            )
    lines.extend(_format_accuracy_search(p.get("target_accuracy_drop")))
    if p.get("round_to", 1) > 1:
        lines.append(f"every pruned group keeps a multiple of {p['round_to']} channels")
    return lines


def _format_attention(blocks: list[dict[str, Any]]) -> list[str]:
    if not blocks:
        return []
    lines = ["", "attention blocks:"]
    for b in blocks:
        why = "".join(
            f"\n    {w['op_type']} '{w['node']}': {w['reason']}" for w in b["barriers"]
        )
        lines.append(f"  {b['block']}: {b['count']} {b['units']}, {b['status']}{why}")
    return lines


def _format_accuracy_search(search: Mapping[str, Any] | None) -> list[str]:
    if not search:
        return []
    lines = [
        f"accuracy search (top-1 drop within {search['max_drop_points']:g} points on "
        f"{search['eval_samples']} samples of {search['data']}, original "
        f"{100 * search['original_top1']:.2f}%):",
        "  target MACs  MACs    top-1    drop",
    ]
    for row in sorted(search["steps"], key=lambda r: r["target_macs"]):
        mark = "  <- chosen" if row["target_macs"] == search["chosen_target_macs"] else ""
        lines.append(
            f"  {row['target_macs']:>11.4f}  {row['macs_fraction']:.3f}  "
            f"{100 * row['top1']:>6.2f}%  {row['drop_points']:>6.2f}{mark}"
        )
    return lines


def _branch_lines(title: str, branches: list[dict[str, Any]]) -> list[str]:
    """One line per residual branch: its Add, its nodes, the groups whose removal takes it."""
    if not branches:
        return []
    lines = ["", f"{title}:"]
    for b in branches:
        groups = ", ".join(str(g) for g in b["groups"])
        lines.append(f"  into Add '{b['add']}' ({len(b['nodes'])} nodes; group {groups}): {_names(b['nodes'])}")
    return lines


def format_inspect(report: InspectReport) -> str:
    lines = ["group  size  status     importance (min/median/max)  producers"]
    for g in report.groups:
        imp = g.importance
        imp_s = f"{imp['min']:.3g}/{imp['median']:.3g}/{imp['max']:.3g}" if imp else "-"
        lines.append(f"{g.id:>5}  {g.size:>4}  {g.status:<9}  {imp_s:<27}  {_names(g.producers)}")
    if report.barriers:
        lines.append("")
        lines.append("barriers:")
        for b in report.barriers:
            lines.append(f"  {b['op_type']} '{b['node']}': {b['reason']}")
    lines.extend(_format_attention(report.attention))
    lines.extend(_branch_lines("removable residual branches", report.removable_branches))
    lines.append("")
    lines.append(f"params: {_human(report.params)}   MACs: {_human(report.macs)}")
    return "\n".join(lines)
