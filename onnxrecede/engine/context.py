"""State shared by the rules: channel views, couplings, barriers, and parameter edits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.spaces import FIXED, PRODUCER, ChannelView, ElementSpace

Dims = tuple[int | None, ...]
D = TypeVar("D")


@dataclass(frozen=True)
class ConsumeSite:
    """A parameter whose slices along ``axis`` read the channels ``labels`` (e.g. Conv W, axis 1).

    Zeroing those slices for removed channels gives the masked reference model.
    """

    node: ir.Node
    input_index: int
    axis: int
    labels: np.ndarray


@dataclass(frozen=True)
class HeadView:
    """A Reshape that split a channel axis for attention: its unit labels along the tracked
    axis, and whether they are heads or head dims (``units``; None: the channel axis as is,
    split later)."""

    node: ir.Node
    labels: np.ndarray
    units: str | None


@dataclass(frozen=True)
class BarrierRecord:
    node: ir.Node
    reason: str
    labels: np.ndarray


def static_dims(value: ir.Value | None, const: ConstantEvaluator) -> Dims | None:
    """Static dims of a value (None for a symbolic dim), or None if the rank is unknown."""
    if value is None:
        return None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None:
        arr = const.direct(value)
        return None if arr is None else tuple(int(d) for d in arr.shape)
    return tuple(d if isinstance(d, int) else None for d in shape)


def node_label(node: ir.Node) -> str:
    return f"{node.op_type} '{node.name or '<unnamed>'}'"


@dataclass
class AnalysisContext:
    """What the rules read and write while the graph is walked in topological order."""

    graph: ir.Graph
    space: ElementSpace = field(default_factory=ElementSpace)
    const: ConstantEvaluator = field(default_factory=ConstantEvaluator)
    views: dict[ir.Value, ChannelView] = field(default_factory=dict)
    consume_sites: list[ConsumeSite] = field(default_factory=list)
    barriers: list[BarrierRecord] = field(default_factory=list)
    #: nodes that own output channels (producers, depthwise convs): their output view
    channel_outputs: dict[ir.Node, ChannelView] = field(default_factory=dict)
    #: what a rule decided about a node (the split sizes, the gather indices, the conv kind),
    #: for its rewrite to read instead of working it out again
    decisions: dict[ir.Node, Any] = field(default_factory=dict)
    #: activation inputs (of a MatMul between activations: q, k, v) whose removed channels the
    #: masked reference zeroes with a multiply, as if their producers' columns were zeroed
    mask_sites: list[ConsumeSite] = field(default_factory=list)
    #: what a split of the channel axis into (heads, head_dim) prunes: ``heads`` or ``dims``
    head_units: str = "heads"
    #: the views such splits made: one label per attention unit (head, or head dim)
    head_views: list[HeadView] = field(default_factory=list)

    # ---- shapes

    def dims(self, value: ir.Value | None) -> Dims | None:
        return static_dims(value, self.const)

    def rank(self, value: ir.Value | None) -> int | None:
        d = self.dims(value)
        return None if d is None else len(d)

    def constant(self, value: ir.Value | None) -> np.ndarray | None:
        return self.const.value(value)

    def is_constant(self, value: ir.Value | None) -> bool:
        return value is not None and self.const.value(value) is not None

    # ---- views

    def view(self, value: ir.Value | None) -> ChannelView | None:
        return None if value is None else self.views.get(value)

    def set_view(self, value: ir.Value, axis: int, labels: np.ndarray) -> ChannelView:
        view = ChannelView(axis, labels)
        self.views[value] = view
        return view

    def produce(self, node: ir.Node, value: ir.Value, axis: int, size: int) -> ChannelView:
        """Fresh prunable channels created by ``node`` on ``value``'s ``axis``."""
        view = self.set_view(value, axis, self.space.new_atom(size, PRODUCER, node, value))
        self.channel_outputs[node] = view
        return view

    def fixed(self, value: ir.Value | None, size: int, node: ir.Node | None = None) -> np.ndarray:
        """Channels that can never be removed (a constant, an unknown source)."""
        return self.space.new_atom(size, FIXED, node, value)

    def couple(self, a: ChannelView, b: ChannelView) -> None:
        self.space.union_labels(a.labels, b.labels)

    def consume(self, node: ir.Node, input_index: int, axis: int, labels: np.ndarray) -> None:
        self.consume_sites.append(ConsumeSite(node, input_index, axis, labels))

    def head_labels(self) -> np.ndarray:
        """A label of every attention unit (see ``rules.heads``)."""
        if not self.head_views:
            return np.empty(0, np.int64)
        return np.concatenate([h.labels for h in self.head_views])

    def mask_input(self, node: ir.Node, input_index: int, axis: int, labels: np.ndarray) -> None:
        """The masked reference zeroes the removed channels of this activation input."""
        self.mask_sites.append(ConsumeSite(node, input_index, axis, labels))

    def block(self, node: ir.Node, labels: np.ndarray, reason: str) -> None:
        if len(labels):
            self.barriers.append(BarrierRecord(node, reason, labels))

    def decide(self, node: ir.Node, decision: Any) -> None:
        """Record what the rule decided about ``node``; its rewrite reads it back."""
        self.decisions[node] = decision

    def barrier(self, node: ir.Node, reason: str) -> None:
        """Make ``node`` a barrier: block every channel it reads, forget what it produced."""
        for inp in node.inputs:
            view = self.view(inp)
            if view is not None:
                self.block(node, view.labels, reason)
        for out in node.outputs:
            self.views.pop(out, None)
        self.channel_outputs.pop(node, None)
        self.decisions.pop(node, None)


class EditKind(str, Enum):
    """What an edit does to the indices it names along one axis (compares equal to its value)."""

    KEEP = "keep"  # keep only them: the pruned model
    ZERO = "zero"  # set them to zero: the masked reference


#: one step of a parameter edit: (axis, kind, indices)
EditOp = tuple[int, EditKind, tuple[int, ...]]


@dataclass(frozen=True)
class ParamEdit:
    """One requested change of a constant input: slice (keep) or zero some indices on axes."""

    node: ir.Node
    input_index: int
    ops: tuple[EditOp, ...]


@dataclass
class RewriteContext:
    """What rules read and request while the model is rewritten to the kept channels."""

    analysis_views: dict[ir.Value, ChannelView]
    keep_element: np.ndarray
    const: ConstantEvaluator
    decisions: dict[ir.Node, Any] = field(default_factory=dict)
    edits: list[ParamEdit] = field(default_factory=list)
    replacements: list[tuple[ir.Node, int, np.ndarray]] = field(default_factory=list)

    def view(self, value: ir.Value | None) -> ChannelView | None:
        return None if value is None else self.analysis_views.get(value)

    def decision(self, node: ir.Node, kind: type[D]) -> D | None:
        """What analysis decided about ``node``, if it recorded a decision of type ``kind``."""
        found = self.decisions.get(node)
        return found if isinstance(found, kind) else None

    def dims(self, value: ir.Value | None) -> Dims | None:
        return static_dims(value, self.const)

    def rank(self, value: ir.Value | None) -> int | None:
        d = self.dims(value)
        return None if d is None else len(d)

    def keep_positions(self, value: ir.Value | None) -> np.ndarray | None:
        """Kept positions along ``value``'s channel axis (None if it is not tracked)."""
        view = self.view(value)
        if view is None:
            return None
        return np.flatnonzero(self.keep_element[view.labels])

    def changed(self, value: ir.Value | None) -> bool:
        view = self.view(value)
        return view is not None and not bool(self.keep_element[view.labels].all())

    def slice_param(self, node: ir.Node, input_index: int, slices: dict[int, np.ndarray]) -> None:
        """Keep ``slices[axis]`` indices of the constant input on each axis."""
        ops = tuple(
            (axis, EditKind.KEEP, tuple(int(i) for i in idx))
            for axis, idx in sorted(slices.items())
        )
        if ops:
            self.edits.append(ParamEdit(node, input_index, ops))

    def set_constant_input(self, node: ir.Node, input_index: int, array: np.ndarray) -> None:
        """Replace a constant input (shape vectors, split sizes, pads, ...) by a new value."""
        self.replacements.append((node, input_index, array))

    def constant(self, value: ir.Value | None) -> np.ndarray | None:
        return self.const.value(value)
