"""Residual branches that go whole when one of their inner groups loses every channel.

Cases:
1. A *residual branch* of an ``Add(a, b)``: the nodes that ``b`` depends on and ``a`` does not
   (``a`` is the skip path, ``b`` the branch output; both orders are tried). Its only exit is
   that ``Add``: no output of a branch node is read outside the branch (nor is a graph output),
   and ``b`` is read by the ``Add`` alone.
2. An *inner group* of a branch: a prunable group all of whose tensors are produced inside it.
   It *cuts* the branch when every path from the branch's non-constant inputs to ``b`` passes
   through a tensor that holds only that group's channels: with all of them removed, the masked
   reference computes ``b`` from constants alone (the consumers' zeroed weights leave their
   biases), so ``b`` does not depend on the input.
3. Removing a branch: ``b`` is evaluated once on the masked reference (ONNX Runtime, CPU,
   batch 1), reduced to ``[1, C, 1, ...]`` when it is equal over its spatial positions, and
   becomes the ``Add``'s constant input (the ``Add`` rule slices it to the kept channels of
   the residual stream like any per-channel constant); the branch's nodes and the initializers
   only they read are removed. Verification then compares the result with that same masked
   reference.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.constants import make_tensor

logger = logging.getLogger(__name__)


@dataclass
class Branch:
    """Case 1-2: a removable residual branch."""

    add: ir.Node
    output: ir.Value  # b
    nodes: list[ir.Node]  # in graph order
    groups: list[int] = field(default_factory=list)  # inner groups that cut it

    def to_dict(self) -> dict[str, Any]:
        return {
            "add": self.add.name or "",
            "output": self.output.name or "",
            "nodes": [n.name or n.op_type for n in self.nodes],
            "groups": list(self.groups),
        }


def find_branches(analysis: Analysis) -> list[Branch]:
    """Every residual branch with at least one inner group that cuts it."""
    graph = analysis.model.graph
    order = {node: i for i, node in enumerate(graph)}
    found = []
    for node in graph:
        if node.op_type != "Add" or len(node.inputs) != 2 or None in node.inputs:
            continue
        for skip, out in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            assert skip is not None and out is not None
            branch = _branch(analysis, node, skip, out, order)
            if branch is not None:
                found.append(branch)
                break
    return found


def _ancestors(value: ir.Value) -> set[ir.Node]:
    seen: set[ir.Node] = set()
    stack = [value.producer()]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(i.producer() for i in node.inputs if i is not None)
    return seen


def _branch(
    analysis: Analysis, add: ir.Node, skip: ir.Value, out: ir.Value, order: Mapping[ir.Node, int]
) -> Branch | None:
    producer = out.producer()
    if producer is None or out.is_graph_output() or len(out.uses()) != 1:
        return None
    nodes = _ancestors(out) - _ancestors(skip)
    if not nodes or any(n.graph is not analysis.model.graph for n in nodes):
        return None
    for node in nodes:
        for o in node.outputs:
            if o.is_graph_output() or any(u.node not in nodes for u in o.uses() if o is not out):
                return None
    groups = [g for g in inner_groups(analysis, nodes) if _cuts(analysis, g, nodes, out)]
    if not groups:
        return None
    return Branch(add, out, sorted(nodes, key=order.__getitem__), groups)


def _group_values(analysis: Analysis, gid: int) -> list[ir.Value]:
    return [
        v
        for v, view in analysis.ctx.views.items()
        if gid in analysis.group_of_labels(view.labels)
    ]


def inner_groups(analysis: Analysis, nodes: set[ir.Node]) -> list[int]:
    """Case 2: the prunable groups all of whose tensors ``nodes`` produce."""
    inner = []
    for g in analysis.groups:
        if not g.prunable:
            continue
        values = _group_values(analysis, g.id)
        if values and all(v.producer() in nodes for v in values):
            inner.append(g.id)
    return inner


def _cuts(analysis: Analysis, gid: int, nodes: set[ir.Node], out: ir.Value) -> bool:
    """Case 2: no path from the branch's non-constant inputs to ``out`` avoids ``gid``."""
    pure = {
        v
        for v, view in analysis.ctx.views.items()
        if analysis.group_of_labels(view.labels) == [gid]
    }
    sources = {
        i
        for n in nodes
        for i in n.inputs
        if i is not None and i.producer() not in nodes and analysis.ctx.constant(i) is None
    }
    stack = list(sources)
    seen: set[ir.Value] = set()
    while stack:
        value = stack.pop()
        if value in seen or value in pure:
            continue
        seen.add(value)
        if value is out:
            return False
        for use in value.uses():
            if use.node in nodes:
                stack.extend(use.node.outputs)
    return True


# ----------------------------------------------------------------------------- removal


def branch_constants(
    masked: ir.Model, branches: Sequence[Branch], input_shapes: Mapping[str, Sequence[int]] | None
) -> list[np.ndarray]:
    """Case 3: each branch output as the masked reference computes it (batch 1)."""
    from onnxrecede.io.model_files import save_model
    from onnxrecede.runtime.session import cpu_session, random_inputs

    with tempfile.TemporaryDirectory(prefix="onnxrecede-branches-") as tmp:
        path = Path(tmp) / "masked.onnx"
        probe = masked.clone()
        names = {v.name for n in probe.graph for v in n.outputs}
        for b in branches:
            assert b.output.name in names, b.output.name
            value = next(v for n in probe.graph for v in n.outputs if v.name == b.output.name)
            probe.graph.outputs.append(value)
        save_model(probe, path)
        del probe
        session = cpu_session(str(path))
        shapes = {k: [1, *list(v)[1:]] for k, v in (input_shapes or {}).items()}
        feeds = random_inputs(session, shapes, batch=1, seed=0)
        wanted = [b.output.name for b in branches]
        return [a[:1] for a in session.run(wanted, feeds)]


def _reduced(array: np.ndarray) -> np.ndarray:
    """``[1, C, 1, ...]`` when every spatial position holds the same value (exactly)."""
    if array.ndim <= 2:
        return array
    spatial = tuple(range(2, array.ndim))
    lo, hi = array.min(axis=spatial, keepdims=True), array.max(axis=spatial, keepdims=True)
    return lo if np.array_equal(lo, hi) else array


def remove_branches(
    analysis: Analysis, branches: Sequence[Branch], constants: Sequence[np.ndarray]
) -> list[dict[str, Any]]:
    """Case 3 on the analysed model (before ``rewrite``); returns what was removed."""
    graph = analysis.model.graph
    removed = []
    for branch, constant in zip(branches, constants, strict=True):
        array = _reduced(constant)
        name = f"{branch.output.name or 'branch'}_folded"
        value = ir.Value(name=name, shape=ir.Shape(array.shape), const_value=make_tensor(array, name))
        value.dtype = value.const_value.dtype  # type: ignore[union-attr]
        graph.register_initializer(value)
        index = 0 if branch.add.inputs[0] is branch.output else 1
        branch.add.replace_input_with(index, value)
        _drop(graph, branch.nodes)
        removed.append(branch.to_dict() | {"folded_shape": list(array.shape)})
        logger.info("removed the residual branch into %s (%d nodes)", branch.add.name, len(branch.nodes))
    return removed


def _drop(graph: ir.Graph, nodes: Sequence[ir.Node]) -> None:
    inputs = {i for n in nodes for i in n.inputs if i is not None}
    for node in reversed(nodes):
        graph.remove(node, safe=True)
    for value in inputs:
        if value.is_initializer() and not value.uses() and not value.is_graph_output():
            graph.initializers.pop(value.name or "", None)
