"""Plan: importances + policy -> which channels of each group are kept.

Cases:
1. Each key's vector scores the channels of one tensor; an attention unit (a head, or a head
   dim of every head: ``rules.heads``) that spans several channels of that tensor (head_dim
   channels of a projection, 3 x head_dim of a fused q/k/v one) scores their mean there. A channel (unit) of a group collects the scores of every
   member that holds it, aggregated by max (default: remove only what every member finds
   unimportant), mean or sum. A channel nobody scored is kept.
2. Policies: a global ratio (the fraction of all scored prunable channels removed, lowest first),
   a local ratio (the same fraction in every group), or an absolute threshold (remove channels
   whose importance is below it).
3. Ties are broken by group id, then channel position: the same input gives the same plan.
4. No group, and no tracked tensor, keeps fewer than ``min_channels`` channels (at least 1); the
   most important removed channels are restored where needed.
5. ``round_to`` N > 1: every pruned group keeps a multiple of N channels (blocked kernels), the
   nearest one to what the policy chose (ties upwards) and at least N: the most important
   removed channels come back, or the least important kept ones go. A group smaller than N,
   or whose rounded count is its size, is left whole.
6. ``whole_groups``: groups that may lose every channel (the inner groups of removable
   residual branches, :mod:`onnxrecede.engine.branches`). One whose channels all fall below
   the cut keeps none (``Plan.removed_groups``): ``min_channels`` applies only to the groups
   and tensors that remain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxrecede.checks import whole_number
from onnxrecede.engine.analysis import Analysis
from onnxrecede.errors import ImportancesError, InputError

AGGREGATES = ("max", "mean", "sum")
SCOPES = ("global", "local")


@dataclass(frozen=True)
class Policy:
    """How many channels to remove."""

    ratio: float | None = 0.5
    threshold: float | None = None
    scope: str = "global"
    aggregate: str = "max"
    min_channels: int = 1
    round_to: int = 1

    def validate(self) -> None:
        if (self.ratio is None) == (self.threshold is None):
            raise InputError("give exactly one of ratio (--ratio) and threshold (--threshold)")
        if self.ratio is not None and not 0.0 <= self.ratio < 1.0:
            raise InputError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise InputError(f"threshold must be a finite number, got {self.threshold}")
        if self.scope not in SCOPES:
            raise InputError(f"scope must be one of {', '.join(SCOPES)}, got '{self.scope}'")
        if self.aggregate not in AGGREGATES:
            raise InputError(
                f"aggregate must be one of {', '.join(AGGREGATES)}, got '{self.aggregate}'"
            )
        whole_number("min-channels", self.min_channels)
        whole_number("round-to", self.round_to)


@dataclass
class Plan:
    keep_element: np.ndarray  # bool per element (already spread over union-find classes)
    class_importance: dict[int, float]  # root element -> aggregated importance
    scored_groups: set[int]
    removed_per_group: dict[int, int] = field(default_factory=dict)
    restored: int = 0
    #: case 6: groups that lost every channel (their residual branches go)
    removed_groups: set[int] = field(default_factory=set)


def _per_unit(roots: np.ndarray, vec: np.ndarray) -> dict[int, float]:
    """One score per attention unit of a tensor: the mean of the channels it spans there."""
    unique, inverse = np.unique(roots, return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(vec, dtype=np.float64))
    counts = np.bincount(inverse)
    return {int(r): float(t / n) for r, t, n in zip(unique, sums, counts)}


def class_scores(
    analysis: Analysis, scores: Mapping[ir.Value, tuple[str, np.ndarray]], aggregate: str
) -> dict[int, float]:
    collected: dict[int, list[float]] = {}
    head_roots = np.unique(analysis.roots[analysis.ctx.head_labels()])
    for value, (key, vec) in scores.items():
        view = analysis.ctx.view(value)
        if view is None:
            continue
        if len(vec) != len(view):
            raise ImportancesError(
                f"importances key '{key}' has {len(vec)} values, but tensor '{value.name}' has "
                f"{len(view)} channels"
            )
        roots = analysis.roots[view.labels]
        unit = np.isin(roots, head_roots)
        for r, s in zip(roots[~unit].tolist(), np.asarray(vec)[~unit].tolist()):
            collected.setdefault(r, []).append(float(s))
        for r, s in _per_unit(roots[unit], np.asarray(vec)[unit]).items():
            collected.setdefault(r, []).append(s)
    reducers: dict[str, Callable[[list[float]], float]] = {
        "max": max,
        "sum": sum,
        "mean": lambda xs: sum(xs) / len(xs),
    }
    agg = reducers[aggregate]
    return {r: float(agg(v)) for r, v in collected.items()}


def make_plan(
    analysis: Analysis,
    scores: Mapping[ir.Value, tuple[str, np.ndarray]],
    policy: Policy,
    keep_roots: frozenset[int] = frozenset(),
    whole_groups: frozenset[int] = frozenset(),
) -> Plan:
    """Decide which channels to keep. ``scores`` maps a tensor to (key, importance vector).

    ``keep_roots``: channels (union-find roots) kept whatever the policy says (a budget search
    keeps an expensive channel to land closer to its target).
    """
    policy.validate()
    importance = class_scores(analysis, scores, policy.aggregate)
    n_elements = analysis.roots.shape[0]
    removed_roots: set[int] = set()
    candidates: list[tuple[float, int, int, int]] = []  # (importance, group, position, root)
    scored: set[int] = set()
    for g in analysis.groups:
        if not g.prunable:
            continue
        group_scores = [(importance.get(int(r)), int(r)) for r in g.classes]
        if all(s is None for s, _ in group_scores):
            continue
        scored.add(g.id)
        ranked = sorted(
            (s, g.id, pos, r) for pos, (s, r) in enumerate(group_scores) if s is not None
        )
        if policy.threshold is not None:
            removed_roots.update(r for s, _, _, r in ranked if s < policy.threshold)
        elif policy.scope == "local":
            assert policy.ratio is not None
            k = int(math.floor(policy.ratio * g.size + 1e-9))
            removed_roots.update(r for _, _, _, r in ranked[:k])
        else:
            candidates.extend(ranked)
    if policy.threshold is None and policy.scope == "global" and candidates:
        assert policy.ratio is not None
        total = sum(analysis.groups[gid].size for gid in scored)
        k = min(int(math.floor(policy.ratio * total + 1e-9)), len(candidates))
        candidates.sort()
        removed_roots.update(r for _, _, _, r in candidates[:k])
    keep_root = np.ones(n_elements, dtype=bool)
    for r in removed_roots - keep_roots:
        keep_root[r] = False
    gone = {g for g in whole_groups if not keep_root[analysis.groups[g].classes].any()}
    exempt = {int(r) for g in gone for r in analysis.groups[g].classes}
    restored = enforce_minimum(analysis, keep_root, importance, policy.min_channels, exempt)
    if policy.round_to > 1:
        _round_groups(analysis, keep_root, importance, scored - gone, policy)
        restored += enforce_minimum(
            analysis, keep_root, importance, policy.min_channels, exempt
        )
    keep_element = keep_root[analysis.roots]
    plan = Plan(keep_element, importance, scored, restored=restored, removed_groups=gone)
    for g in analysis.groups:
        n = int((~keep_root[g.classes]).sum())
        if n:
            plan.removed_per_group[g.id] = n
    return plan


def enforce_minimum(
    analysis: Analysis,
    keep_root: np.ndarray,
    importance: Mapping[int, float],
    minimum: int,
    exempt: set[int] | frozenset[int] = frozenset(),
) -> int:
    """Restore the most important removed channels where a group or tensor falls below minimum
    (spans made only of ``exempt`` channels, which go with their branch, are left alone)."""
    restored = 0
    spans: list[np.ndarray] = [g.classes for g in analysis.groups]
    seen: set[int] = set()
    for view in analysis.ctx.views.values():
        if id(view.labels) not in seen:
            seen.add(id(view.labels))
            spans.append(np.unique(analysis.roots[view.labels]))
    for roots in spans:
        if exempt and exempt.issuperset(int(r) for r in roots):
            continue
        need = min(minimum, len(roots)) - int(keep_root[roots].sum())
        if need <= 0:
            continue
        removed = [int(r) for r in roots if not keep_root[r]]
        removed.sort(key=lambda r: (-importance.get(r, math.inf), r))
        for r in removed[:need]:
            keep_root[r] = True
            restored += 1
    return restored


def _round_groups(
    analysis: Analysis,
    keep_root: np.ndarray,
    importance: Mapping[int, float],
    scored: set[int],
    policy: Policy,
) -> None:
    """Case 5: every pruned group keeps a multiple of ``policy.round_to`` channels."""
    n = policy.round_to
    for gid in sorted(scored):
        roots = [int(r) for r in analysis.groups[gid].classes]
        kept = int(keep_root[roots].sum())
        if kept == len(roots) or kept % n == 0:
            continue
        floor = -(-max(policy.min_channels, 1) // n) * n  # smallest multiple >= min_channels
        target = max(floor, int(math.floor(kept / n + 0.5)) * n)
        removable = sorted(
            (importance[r], r) for r in roots if keep_root[r] and r in importance
        )  # least important kept first
        if target < kept and len(removable) < kept - target:
            target += n  # not enough scored channels to drop: round up instead
        if target >= len(roots):
            keep_root[roots] = True
            continue
        if target > kept:
            back = sorted(
                (r for r in roots if not keep_root[r]), key=lambda r: (-importance.get(r, 0.0), r)
            )
            keep_root[back[: target - kept]] = True
        else:
            keep_root[[r for _, r in removable[: kept - target]]] = False
