"""The rule registry: per-op channel behaviour, keyed by (domain, op type).

A rule describes which ports of a node carry a channel axis and their role: it produces
channels, consumes them, passes them through, couples several inputs, or maps indices. It also
knows how to slice that node's own initializers and attributes. Everything else the package
needs to know about an op is asked of its rule too, so that supporting a new op is one rule:

1. ``analyze`` / ``rewrite``: the channel behaviour (analysis, rewrite);
2. ``weight_input`` and ``output_channels``: which input's initializer names the node and how
   many output channels it has (importances keys);
3. ``reports_channels``: its output channels are listed in reports (``removed_channels``);
4. ``check``: consistency problems of a rewritten node the ONNX checker misses (verification);
5. ``macs`` and ``param_inputs``: its cost (``onnxrecede.engine.cost``);
6. ``keeps_shape``: its first output has its first input's shape (shape inference);
7. ``param_source``: constant propagation, a parameter slice moved back through the node to
   the constant it is computed from (rewrite);
8. ``weight_rows``: its weight as one row per output channel (the weight-norm criteria);
9. ``cost_axes``: the channel axes whose kept fraction scales its MACs and each parameter
   (the cost of a plan, :mod:`onnxrecede.engine.budget`);
10. ``constant_through``: per-channel constants carried from its input to its output (bias
    compensation of channels that are constant by construction).

``analyze`` returns ``None`` when it understood the node, or a reason (a string) when the node
is a barrier: the caller then blocks every channel group the node touches. It never raises for
an unsupported case, so the reason can be reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import onnx_ir as ir

if TYPE_CHECKING:
    import numpy as np

    from onnxrecede.engine.constants import ConstantEvaluator
    from onnxrecede.engine.context import AnalysisContext, EditOp, RewriteContext
    from onnxrecede.engine.spaces import ChannelView

#: dims of a tensor as stored on the value (ints, symbolic dims), or None if unknown
Dims = tuple[Any, ...] | None
#: ``shape_of(index, output=False)``: the fully known shape of an input (output), else None
ShapeOf = Callable[..., "tuple[int, ...] | None"]
#: ``view_of(value)``: the channel view analysis found for a value, or None
ViewOf = Callable[["ir.Value | None"], "ChannelView | None"]
#: channel label arrays (one per axis a cost term spans)
Axes = tuple["np.ndarray", ...]


def labels_of(view: ChannelView | None) -> Axes:
    return () if view is None else (view.labels,)


def output_axes(node: ir.Node, view_of: ViewOf) -> Axes:
    """The first output's channel labels (none when it carries no tracked channels)."""
    return labels_of(view_of(node.outputs[0]) if node.outputs else None)


class Rule:
    """Base rule: subclasses override :meth:`analyze` and, if they own parameters, :meth:`rewrite`."""

    #: what the rule does, one line for the README's table (``onnxrecede.engine.describe``)
    behaviour: str = ""
    #: the input whose initializer name may key the node's importances (None: no own channels)
    weight_input: int | None = None
    #: its output channels are reported per node (``removed_channels``)
    reports_channels: bool = False

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        raise NotImplementedError

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        """Slice this node's parameters and attributes to the kept channels (default: nothing)."""

    def output_channels(self, node: ir.Node) -> int | None:
        """How many output channels the node has, read from its parameters (None: unknown)."""
        return None

    def check(self, node: ir.Node, dims: Sequence[Dims]) -> list[str]:
        """Consistency problems between the node's inputs (``dims`` per input), as text."""
        return []

    def macs(self, node: ir.Node, shape_of: ShapeOf) -> int | None:
        """Multiply-accumulates of the node (None: shapes unknown); see ``onnxrecede.cost``."""
        return 0

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        """Inputs whose constant tensors count as parameters (see ``onnxrecede.cost``)."""
        return ()

    def keeps_shape(self, op_type: str) -> bool:
        """Whether the first output always has the first input's shape."""
        return False

    def param_source(
        self, node: ir.Node, ops: tuple[EditOp, ...], rank: int
    ) -> tuple[EditOp, ...] | None:
        """The slice ``ops`` of this node's output, expressed on its constant first input of
        rank ``rank``, when the output is computed from it alone (None: not traced through)."""
        return None

    def weight_rows(self, node: ir.Node, weight: np.ndarray) -> np.ndarray | None:
        """The weight (input ``weight_input``) as one row per output channel, None if its
        layout is not understood."""
        return None

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """Label arrays whose kept fractions scale the node's MACs (``index`` None) or its
        parameter input ``index``; ``view_of(value)`` is the analysis' channel view. Default:
        MACs follow the output channels, parameters do not shrink."""
        return output_axes(node, view_of) if index is None else ()

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        """Per position of the input's channel axis, a channel's constant value (NaN: not
        constant) -> the output channel's value; None when the op does not map constants."""
        return None

    def scalar_params(self, op_type: str) -> bool:
        """Whether a one-element constant among :meth:`param_inputs` counts as a parameter."""
        return True


_RULES: dict[tuple[str, str], Rule] = {}

R = TypeVar("R", bound=type[Rule])


def register(*op_types: str, domain: str = "") -> Callable[[R], R]:
    """Class decorator: register one instance of the rule for each op type."""

    def deco(cls: R) -> R:
        instance = cls()
        for op in op_types:
            _RULES[(domain, op)] = instance
        return cls

    return deco


def rule_for(node: ir.Node) -> Rule | None:
    domain = "" if node.domain == "ai.onnx" else node.domain
    _load_rules()
    return _RULES.get((domain, node.op_type))


def registered_ops() -> list[str]:
    _load_rules()
    return sorted(op if not d else f"{d}::{op}" for d, op in _RULES)


def rules() -> dict[tuple[str, str], Rule]:
    """Every registered rule, keyed by (domain, op type)."""
    _load_rules()
    return dict(_RULES)


def weight_inputs() -> dict[str, int]:
    """Default-domain op types that own output channels, and the input holding their weight."""
    return {
        op: rule.weight_input
        for (domain, op), rule in rules().items()
        if not domain and rule.weight_input is not None
    }


def reported_ops() -> tuple[str, ...]:
    """Default-domain op types whose output channels reports list per node."""
    return tuple(sorted(op for (d, op), rule in rules().items() if not d and rule.reports_channels))


def const_dims(node: ir.Node, index: int) -> tuple[int, ...] | None:
    """Fully known dims of a node's input (its constant's shape first), else None."""
    from onnxrecede.engine.constants import known_dims

    return known_dims(node.inputs[index]) if index < len(node.inputs) else None


_loaded = False


def _load_rules() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import onnxrecede.engine.rules  # noqa: F401  (registers every family)
