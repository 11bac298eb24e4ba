"""Rewrite: slice initializers, attributes and shapes to the kept channels.

Pass order (enforced): ``analyze`` -> ``make_plan`` -> ``mask_consumers`` (a copy of the
analysed model) -> ``rewrite`` (in place, once).

Cases:
1. Every rule slices its own node's parameters; requests are collected first and applied after,
   so every rule reads the original model.
2. An initializer (or Constant node) all of whose uses ask for the same slice is sliced in place
   and keeps its name; otherwise each distinct slice becomes a new initializer.
3. A parameter computed by a unary op from a constant (``Sigmoid(theta)``) is sliced at its
   source; any other computed parameter is folded into a new initializer first.
4. Values left without uses by the rewrite are removed; shapes are cleared and inferred again,
   so no stale value_info is left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis, infer_shapes
from onnxrecede.engine.constants import ConstantEvaluator, make_tensor
from onnxrecede.engine.context import EditKind, EditOp, ParamEdit, RewriteContext
from onnxrecede.engine.registry import rule_for
from onnxrecede.io.stream import ZeroedTensor
from onnxrecede.progress import Progress

logger = logging.getLogger(__name__)



def apply_ops(array: np.ndarray, ops: Iterable[EditOp]) -> np.ndarray:
    out = array
    for axis, op, idx in ops:
        if op == EditKind.KEEP:
            out = _keep(out, axis, np.asarray(idx, dtype=np.int64))
        else:
            out = out.copy() if out is array else out
            index: list[slice | np.ndarray] = [slice(None)] * out.ndim
            index[axis] = np.asarray(idx, dtype=np.int64)
            out[tuple(index)] = 0
    return out


def _keep(array: np.ndarray, axis: int, idx: np.ndarray) -> np.ndarray:
    """``np.take(array, idx, axis)``, C-contiguous, in blocks of rows: a memory-mapped weight
    is never copied whole (np.take copies a misaligned array first)."""
    if axis == 0 or array.ndim < 2:
        return np.ascontiguousarray(array[idx] if array.ndim else array)
    shape = list(array.shape)
    shape[axis] = len(idx)
    out = np.empty(shape, dtype=array.dtype)
    row = max(1, array[:1].nbytes)
    step = max(1, (1 << 23) // row)
    for start in range(0, array.shape[0], step):
        out[start : start + step] = np.take(array[start : start + step], idx, axis=axis)
    return out


class _Editor:
    """Applies parameter edits and constant replacements to one graph."""

    def __init__(self, graph: ir.Graph, const: ConstantEvaluator) -> None:
        self.graph = graph
        self.const = const
        self.orphans: list[ir.Value] = []
        self.renames: list[tuple[ir.Value, str]] = []  # new value, name it should take back
        self._names = {v.name for v in graph.initializers.values()}
        for node in graph:
            self._names.update(o.name for o in node.outputs if o.name)

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def new_initializer(self, base: str, array: np.ndarray) -> ir.Value:
        name = self.unique_name(base)
        value = ir.Value(
            name=name, shape=ir.Shape(array.shape), const_value=make_tensor(array, name)
        )
        value.dtype = value.const_value.dtype  # type: ignore[union-attr]
        self.graph.register_initializer(value)
        return value

    def set_in_place(self, value: ir.Value, array: np.ndarray) -> bool:
        """Give ``value`` new contents, keeping its name. False if it is not a plain constant."""
        if value.is_initializer():
            value.const_value = make_tensor(array, value.name)
            value.shape = ir.Shape(array.shape)
            return True
        node = value.producer()
        if node is not None and node.op_type == "Constant" and "value" in node.attributes:
            node.attributes["value"] = ir.AttrTensor("value", make_tensor(array, value.name))
            value.shape = ir.Shape(array.shape)
            return True
        return False

    def replace_input(self, node: ir.Node, index: int, new: ir.Value) -> None:
        if index >= len(node.inputs):
            node.resize_inputs(index + 1)
        old = node.inputs[index]
        node.replace_input_with(index, new)
        if old is not None:
            self.orphans.append(old)

    def apply_edits(self, edits: list[ParamEdit]) -> None:
        edits = [self._to_source(e) for e in edits]
        by_value: dict[ir.Value, list[ParamEdit]] = {}
        for e in edits:
            v = e.node.inputs[e.input_index]
            assert v is not None
            by_value.setdefault(v, []).append(e)
        for value, group in by_value.items():
            self._apply_value(value, group)

    def _to_source(self, edit: ParamEdit) -> ParamEdit:
        """Follow a parameter through single-use unary ops back to its constant source."""
        value = edit.node.inputs[edit.input_index]
        while value is not None and self.const.direct(value) is None:
            producer = value.producer()
            rule = rule_for(producer) if producer is not None else None
            source = producer.inputs[0] if producer is not None and producer.inputs else None
            array = self.const.value(source) if source is not None else None
            if rule is None or array is None or len(value.uses()) != 1:
                break
            assert producer is not None
            ops = rule.param_source(producer, edit.ops, array.ndim)
            if ops is None:
                break
            edit = ParamEdit(producer, 0, ops)
            value = producer.inputs[0]
        return edit

    def _apply_value(self, value: ir.Value, edits: list[ParamEdit]) -> None:
        original = self.const.value(value)
        assert original is not None, f"parameter '{value.name}' is not constant"
        specs: dict[tuple, list[ParamEdit]] = {}
        for e in edits:
            specs.setdefault(e.ops, []).append(e)
        uses = {(u.node, u.idx) for u in value.uses()}
        edited = {(e.node, e.input_index) for e in edits}
        whole = len(specs) == 1 and uses == edited and not value.is_graph_output()
        for ops, group in specs.items():
            array = apply_ops(original, ops)
            if whole and self.set_in_place(value, array):
                continue
            new = self.new_initializer(f"{value.name}_pruned", array)
            if len(specs) == 1 and value.name:
                self.renames.append((new, value.name))
            for e in group:
                self.replace_input(e.node, e.input_index, new)

    def apply_replacements(self, replacements: list[tuple[ir.Node, int, np.ndarray]]) -> None:
        for node, index, array in replacements:
            old = node.inputs[index] if index < len(node.inputs) else None
            if old is not None and len(old.uses()) == 1 and self.set_in_place(old, array):
                continue
            base = (
                old.name
                if old is not None and old.name
                else f"{node.name or node.op_type}_in{index}"
            )
            new = self.new_initializer(base, array)
            if old is not None and old.name and len(old.uses()) == 1:
                self.renames.append((new, old.name))
            self.replace_input(node, index, new)

    def remove_orphans(self) -> None:
        """Drop initializers and node chains that the rewrite left without uses."""
        stack = list(self.orphans)
        while stack:
            value = stack.pop()
            if value.uses() or value.is_graph_output() or value.is_graph_input():
                continue
            if value.is_initializer() and value.name is not None:
                self.graph.initializers.pop(value.name, None)
                continue
            node = value.producer()
            if node is None or node.graph is not self.graph:
                continue
            if any(o.uses() or o.is_graph_output() for o in node.outputs):
                continue
            inputs = [i for i in node.inputs if i is not None]
            self.graph.remove(node, safe=True)
            stack.extend(inputs)
        self._restore_names()

    def _restore_names(self) -> None:
        """A sliced copy takes back its source's name once the source is gone."""
        live = set(self.graph.initializers)
        for node in self.graph:
            live.update(o.name for o in node.outputs if o.name)
        for value, name in self.renames:
            if name not in live and value.name and value.name in self.graph.initializers:
                self.graph.initializers.pop(value.name)
                value.name = name
                self.graph.register_initializer(value)
                live.add(name)


def rewrite(analysis: Analysis, keep_element: np.ndarray, progress: Progress | None = None) -> None:
    """Rewrite ``analysis.model`` in place to keep only the channels in ``keep_element``.

    Pass order (enforced): ``analyze`` -> ``make_plan`` -> ``mask_consumers`` (reads the
    analysed model) -> ``rewrite`` (changes it, once) -> count the cost after.
    """
    if analysis.rewritten:
        raise RuntimeError(
            "rewrite() was already applied to this analysis: analyse the model again"
        )
    analysis.rewritten = True
    ctx = RewriteContext(
        analysis.ctx.views, keep_element, analysis.ctx.const, analysis.ctx.decisions
    )
    _apply(analysis.model, ctx, progress)


def pruned_copy(analysis: Analysis, keep_element: np.ndarray) -> ir.Model:
    """A copy of the analysed model rewritten to ``keep_element``; the analysed model is left
    as it is, so a search can build and measure many plans from one analysis."""
    if analysis.rewritten:
        raise RuntimeError("pruned_copy() reads the analysed model: call it before rewrite()")
    original = analysis.model
    copy = original.clone()
    nodes = dict(zip(list(original.graph), list(copy.graph)))
    values: dict[ir.Value, ir.Value] = dict(zip(original.graph.inputs, copy.graph.inputs))
    for name, value in original.graph.initializers.items():
        values[value] = copy.graph.initializers[name]
    for node, twin in nodes.items():
        values.update((a, b) for a, b in zip(node.inputs, twin.inputs) if a is not None and b is not None)
        values.update(zip(node.outputs, twin.outputs))
    views = {values[v]: view for v, view in analysis.ctx.views.items() if v in values}
    decisions = {nodes[n]: d for n, d in analysis.ctx.decisions.items() if n in nodes}
    _apply(copy, RewriteContext(views, keep_element, ConstantEvaluator(), decisions), None)
    return copy


def _apply(model: ir.Model, ctx: RewriteContext, progress: Progress | None) -> None:
    nodes = list(model.graph)
    for i, node in enumerate(nodes):
        rule = rule_for(node)
        if rule is not None:
            rule.rewrite(ctx, node)
        if progress is not None and (i % 64 == 0 or i == len(nodes) - 1):
            progress("rewrite", i + 1, len(nodes))
    editor = _Editor(model.graph, ctx.const)
    editor.apply_edits(ctx.edits)
    editor.apply_replacements(ctx.replacements)
    editor.remove_orphans()
    refresh_shapes(model)


def mask_consumers(analysis: Analysis, keep_element: np.ndarray, *, lazy: bool = False) -> ir.Model:
    """The masked reference: a copy of the original model whose consuming weights are zeroed
    for every removed channel. The pruned model must compute the same outputs.

    ``lazy``: an initializer all of whose uses are masked alike is not copied but becomes a
    :class:`~onnxrecede.streamio.ZeroedTensor` of the original, zeroed block by block when the
    model is written (verification writes it to a file); the rest is zeroed at once.
    """
    if analysis.rewritten:
        raise RuntimeError("mask_consumers() reads the analysed model: call it before rewrite()")
    original = analysis.model
    masked = original.clone()
    node_map = dict(zip(list(original.graph), list(masked.graph)))
    edits = []
    for site in analysis.ctx.consume_sites:
        removed = np.flatnonzero(~keep_element[site.labels])
        if len(removed):
            ops = ((site.axis, EditKind.ZERO, tuple(int(i) for i in removed)),)
            edits.append(ParamEdit(node_map[site.node], site.input_index, ops))
    merged = _merge_same_param(edits)
    if lazy:
        merged = _zero_lazily(merged)
    editor = _Editor(masked.graph, ConstantEvaluator())
    editor.apply_edits(merged)
    return masked


def _zero_lazily(edits: list[ParamEdit]) -> list[ParamEdit]:
    """Mask lazily, in place, each initializer whose uses are all edited alike; the rest."""
    by_value: dict[ir.Value, list[ParamEdit]] = {}
    rest: list[ParamEdit] = []
    for e in edits:
        value = e.node.inputs[e.input_index]
        if value is None:
            rest.append(e)
        else:
            by_value.setdefault(value, []).append(e)
    for value, group in by_value.items():
        tensor = value.const_value
        uses = {(u.node, u.idx) for u in value.uses()}
        if (
            tensor is None
            or not value.is_initializer()
            or value.is_graph_output()
            or uses != {(e.node, e.input_index) for e in group}
            or len({e.ops for e in group}) != 1
        ):
            rest.extend(group)
            continue
        value.const_value = ZeroedTensor(tensor, group[0].ops, value.name)
    return rest


def _merge_same_param(edits: list[ParamEdit]) -> list[ParamEdit]:
    merged: dict[tuple[ir.Node, int], list[EditOp]] = {}
    for e in edits:
        merged.setdefault((e.node, e.input_index), []).extend(e.ops)
    return [ParamEdit(n, i, tuple(ops)) for (n, i), ops in merged.items()]


def refresh_shapes(model: ir.Model) -> None:
    """Clear every intermediate shape and infer them again (no stale value_info)."""
    graph = model.graph
    interface = set(graph.inputs) | set(graph.outputs)
    for node in graph:
        for out in node.outputs:
            if out not in interface:
                out.shape = None
    for init in graph.initializers.values():
        if init.const_value is not None:
            init.shape = ir.Shape([int(d) for d in init.const_value.shape])  # type: ignore[arg-type]
    infer_shapes(model)
