"""Units: the ops whose latency depends on the kept count of a prunable group.

Cases:
1. A unit is a Conv (plain or depthwise), ConvTranspose (group 1), Gemm, or MatMul with a
   constant weight, plus the chain of per-channel ops that ONNX Runtime fuses into it or that
   scale with its output channels (BatchNormalization, Relu, Clip, ...), each the single
   consumer of the previous output.
2. Its *output axis* is the node's channel output view; its *input axis* is the contracted
   input view (absent for a depthwise conv, whose input and output are one axis). Which input
   axis an op contracts, and whether a conv is depthwise, is asked of its rule's ``cost_axes``
   (the axes that scale its MACs), as the MAC budget does.
3. An axis is *variable* when any of its channels belongs to a prunable group; only variable
   axes are measured at several kept counts.
4. A grouped conv (1 < group < channels) is a unit of fixed cost (measured once).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.registry import rule_for
from onnxrecede.engine.spaces import ChannelView

HEAVY_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: ops fused into (or scaling with) a producer's output channels
FOLLOWER_OPS = frozenset(
    {"BatchNormalization", "Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid",
     "Tanh", "Elu", "Selu", "Softplus"}
)  # fmt: skip


@dataclass
class Axis:
    """One channel axis of a unit: its element labels and, per prunable group, its share."""

    labels: np.ndarray
    #: group id -> number of positions of this axis holding that group's channels
    positions: dict[int, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(len(self.labels))

    @property
    def variable(self) -> bool:
        return bool(self.positions)

    def kept(self, keep_element: np.ndarray) -> int:
        return int(keep_element[self.labels].sum())


@dataclass
class Unit:
    """Case 1: a heavy node, its followers, and its output / input channel axes."""

    node: ir.Node
    followers: list[ir.Node]
    out: Axis | None
    inp: Axis | None
    depthwise: bool
    index: int = 0  # position in the graph: names unnamed nodes stably

    @property
    def name(self) -> str:
        return self.node.name or f"{self.node.op_type}#{self.index}"

    @property
    def groups(self) -> set[int]:
        return axes_groups(self.out, self.inp)


def axes_groups(*axes: Axis | None) -> set[int]:
    """The prunable groups any of ``axes`` holds."""
    found: set[int] = set()
    for axis in axes:
        if axis is not None:
            found.update(axis.positions)
    return found


def find_units(analysis: Analysis) -> list[Unit]:
    """Every unit of the analysed model, in graph order."""
    units = []
    for i, node in enumerate(analysis.model.graph):
        if node.op_type in HEAVY_OPS and node.domain in ("", "ai.onnx"):
            unit = _unit(analysis, node)
            if unit is not None:
                unit.index = i
                units.append(unit)
    return units


def _unit(analysis: Analysis, node: ir.Node) -> Unit | None:
    if node.op_type == "MatMul" and (
        len(node.inputs) < 2 or analysis.constants.value(node.inputs[1]) is None
    ):
        return None  # two activations: not a layer of a fixed width
    grouped = node.op_type.startswith("Conv") and node.attributes.get_int("group", 1) > 1
    depthwise = grouped and _contracted(node, _probe(node)) is None
    out_view = analysis.channel_outputs.get(node) or analysis.view(node.outputs[0])
    out = _axis(analysis, out_view.labels) if out_view is not None else None
    contracted = None if depthwise else _contracted(node, analysis.view)
    inp = _axis(analysis, contracted) if contracted is not None else None
    if grouped and not depthwise:
        out = _fixed(out)
        inp = _fixed(inp)
    return Unit(node, _followers(node), out, inp, depthwise)


def _contracted(node: ir.Node, view_of: Callable[[ir.Value | None], ChannelView | None]) -> np.ndarray | None:
    """Case 2: the labels of the input axis the node contracts, from its rule's ``cost_axes``
    (its MACs scale by the kept output x contracted input fractions), the output hidden."""
    rule = rule_for(node)
    if rule is None:
        return None
    outputs = set(node.outputs)
    axes = rule.cost_axes(node, None, lambda v: None if v in outputs else view_of(v))
    return axes[0] if axes else None


def _probe(node: ir.Node) -> Callable[[ir.Value | None], ChannelView | None]:
    """A channel view on the data input alone: does the op contract it (not depthwise)?"""
    probe = ChannelView(1, np.zeros(0, dtype=np.int64))
    return lambda v: probe if v is not None and v is node.inputs[0] else None


def _fixed(axis: Axis | None) -> Axis | None:
    return None if axis is None else Axis(axis.labels)


def _axis(analysis: Analysis, labels: np.ndarray) -> Axis:
    axis = Axis(labels)
    roots = analysis.roots[labels]
    for r in roots.tolist():
        gid = analysis.group_of_root[int(r)]
        if analysis.groups[gid].prunable:
            axis.positions[gid] = axis.positions.get(gid, 0) + 1
    return axis


def _followers(node: ir.Node) -> list[ir.Node]:
    chain: list[ir.Node] = []
    value = node.outputs[0]
    while True:
        uses = list(value.uses())
        if len(uses) != 1 or value.is_graph_output():
            return chain
        nxt = uses[0].node
        if nxt.op_type not in FOLLOWER_OPS or uses[0].idx != 0 or len(nxt.outputs) < 1:
            return chain
        chain.append(nxt)
        value = nxt.outputs[0]


def grid_points(size: int, max_points: int, multiple: int = 8) -> list[int]:
    """Kept counts measured on an axis of ``size`` channels (the steps of the staircase).

    Every multiple of ``multiple`` when there are at most ``max_points`` of them, else every
    multiple of the smallest multiple of ``multiple`` that fits; 1..``multiple`` - 1 are
    represented by ``multiple`` // 2 and 1 on small axes; ``size`` itself always.
    """
    if size <= multiple:
        return sorted({1, max(1, size // 2), size})
    step = multiple * max(1, -(-size // (multiple * max_points)))
    points = set(range(step, size, step)) | {size}
    if step == multiple:
        points |= {max(1, multiple // 2)}
    return sorted(points)


@dataclass(frozen=True)
class Curve:
    """Latency (ms) at measured kept counts, increasing counts."""

    counts: tuple[int, ...]
    ms: tuple[float, ...]

    def at(self, kept: int) -> float:
        i = bisect.bisect_left(self.counts, kept)
        return self.ms[min(i, len(self.ms) - 1)]


def read_curve(entry: Mapping[str, Any] | None) -> Curve | None:
    """A layer's ``out`` / ``in`` entry of the table as a curve (None: not a prunable axis)."""
    if not entry or "curve" not in entry:
        return None
    pts = sorted((int(k), float(ms)) for k, ms in entry["curve"])
    return Curve(tuple(k for k, _ in pts), tuple(ms for _, ms in pts))
