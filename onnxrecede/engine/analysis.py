"""Analysis: walk the graph once, apply each op's rule, and union coupled channels into groups.

Cases:
1. A node with a rule: the rule sets its outputs' channel views, couples, consumes, or returns a
   barrier reason.
2. A node without a rule (unknown op, custom domain, control flow) is a barrier: the groups it
   reads are not pruned.
3. Graph outputs are barriers: the model's interface never changes.
4. A tracked tensor read inside a subgraph (If/Loop body) is a barrier.
5. Channels of constants and of untraceable sources are fixed: their groups are not pruned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.context import AnalysisContext, ConsumeSite, node_label
from onnxrecede.engine.registry import Dims, rule_for
from onnxrecede.engine.shapes import infer_shapes
from onnxrecede.engine.spaces import FIXED, PRODUCER, Atom, ChannelView
from onnxrecede.progress import Progress

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class BarrierInfo:
    """Why a group is not pruned: which node, and what about it."""

    op_type: str
    node: str
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} '{self.node}': {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"op_type": self.op_type, "node": self.node, "reason": self.reason}


@dataclass
class ChannelGroup:
    """Channels that must be removed together, across every tensor that holds them."""

    id: int
    classes: np.ndarray  # one root element id per channel of the group
    atoms: list[Atom]
    producers: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    barriers: list[BarrierInfo] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(len(self.classes))

    @property
    def prunable(self) -> bool:
        return not self.barriers and any(a.kind == PRODUCER for a in self.atoms)


@dataclass
class Analysis:
    """Channel groups of a model, with the barriers that block some of them."""

    model: ir.Model
    ctx: AnalysisContext
    groups: list[ChannelGroup]
    roots: np.ndarray  # element -> root element
    group_of_root: dict[int, int]
    #: set by ``rewrite``: the model no longer is the one analysed (see ``engine.rewrite``)
    rewritten: bool = False

    @property
    def barriers(self) -> list[BarrierInfo]:
        seen: dict[BarrierInfo, None] = {}
        for g in self.groups:
            for b in g.barriers:
                seen.setdefault(b)
        return list(seen)

    def group_of_labels(self, labels: np.ndarray) -> list[int]:
        roots = self.roots[labels]
        return sorted({self.group_of_root[int(r)] for r in np.unique(roots)})

    # ---- read-only queries for the stages around the engine (policies, repair, reports)

    def view(self, value: ir.Value | None) -> ChannelView | None:
        """The channel axis and labels analysis found on ``value`` (None: no channels)."""
        return self.ctx.view(value)

    def dims(self, value: ir.Value | None) -> Dims | None:
        """Static dims of ``value`` (None for a symbolic dim), None if its rank is unknown."""
        return self.ctx.dims(value)

    @property
    def constants(self) -> ConstantEvaluator:
        """The evaluator of constant values (shared cache: read, do not mutate the model)."""
        return self.ctx.const

    @property
    def consume_sites(self) -> tuple[ConsumeSite, ...]:
        """Every (node, input, axis, labels) where a weight reads tracked channels."""
        return tuple(self.ctx.consume_sites)

    @property
    def channel_outputs(self) -> Mapping[ir.Node, ChannelView]:
        """The nodes that produce channels, with their output view."""
        return MappingProxyType(self.ctx.channel_outputs)


def analyze(model: ir.Model, progress: Progress | None = None) -> Analysis:
    """Find the channel groups of ``model`` (which gets inferred shapes, nothing else)."""
    infer_shapes(model)
    graph = model.graph
    ctx = AnalysisContext(graph)
    nodes = list(graph)
    for i, node in enumerate(nodes):
        rule = rule_for(node)
        reason: str | None
        if rule is None:
            domain = f"{node.domain}::" if node.domain not in ("", "ai.onnx") else ""
            reason = f"op {domain}{node.op_type} is not supported by onnxrecede"
        else:
            reason = rule.analyze(ctx, node)
        if reason is not None:
            logger.debug("barrier %s: %s", node_label(node), reason)
            ctx.barrier(node, reason)
        if progress is not None and (i % 64 == 0 or i == len(nodes) - 1):
            progress("analyse", i + 1, len(nodes))
    _block_interface(ctx, graph)
    return _build_groups(model, ctx)


def _block_interface(ctx: AnalysisContext, graph: ir.Graph) -> None:
    for out in graph.outputs:
        view = ctx.view(out)
        producer = out.producer()
        if view is not None and producer is not None:
            ctx.block(producer, view.labels, f"feeds the graph output '{out.name}'")
    for value, view in list(ctx.views.items()):
        for use in value.uses():
            if use.node.graph is not graph:
                ctx.block(use.node, view.labels, "reads the tensor inside a subgraph")


def _build_groups(model: ir.Model, ctx: AnalysisContext) -> Analysis:
    space = ctx.space
    roots = space.roots()
    atom_of = space.atom_of()
    parent = list(range(len(space.atoms)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for e in range(space.size):
        ra, rb = find(int(atom_of[e])), find(int(atom_of[roots[e]]))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    group_index: dict[int, int] = {}
    groups: list[ChannelGroup] = []
    for atom in space.atoms:
        r = find(atom.index)
        if r not in group_index:
            group_index[r] = len(groups)
            groups.append(ChannelGroup(len(groups), np.empty(0, np.int64), []))
        groups[group_index[r]].atoms.append(atom)
    group_of_root: dict[int, int] = {}
    for g in groups:
        elems = np.concatenate([np.arange(a.start, a.start + a.size) for a in g.atoms])
        g.classes = np.unique(roots[elems])
        for r in g.classes.tolist():
            group_of_root[r] = g.id
        for a in g.atoms:
            if a.kind == FIXED:
                where = node_label(a.node) if a.node is not None else "graph"
                g.barriers.append(
                    BarrierInfo(
                        a.node.op_type if a.node else "Graph",
                        (a.node.name or "") if a.node else "",
                        f"channels of '{a.value.name if a.value else '?'}' ({where}) cannot be traced",
                    )
                )
    analysis = Analysis(model, ctx, groups, roots, group_of_root)
    for rec in ctx.barriers:
        info = BarrierInfo(rec.node.op_type, rec.node.name or "", rec.reason)
        for gid in analysis.group_of_labels(rec.labels):
            if info not in groups[gid].barriers:
                groups[gid].barriers.append(info)
    _collect_members(analysis)
    return analysis


def _collect_members(analysis: Analysis) -> None:
    ctx = analysis.ctx
    for node, view in ctx.channel_outputs.items():
        for gid in analysis.group_of_labels(view.labels):
            analysis.groups[gid].producers.append(node.name or node.op_type)
    touched: dict[int, dict[str, None]] = {}
    for value, view in ctx.views.items():
        gids = analysis.group_of_labels(view.labels)
        nodes = [value.producer()] + [u.node for u in value.uses()]
        for gid in gids:
            bucket = touched.setdefault(gid, {})
            for n in nodes:
                if n is not None:
                    bucket.setdefault(n.name or n.op_type)
    for gid, names in touched.items():
        analysis.groups[gid].members = list(names)
