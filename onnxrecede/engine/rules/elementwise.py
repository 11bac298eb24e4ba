"""Elementwise ops.

Cases:
1. Unary ops (activations, Cast, Identity, Dropout, ...) pass channels through to every output.
2. Shape-only readers (Shape, Size) and constant sources produce no channel tensor.
3. Broadcasting ops (Add, Sub, Mul, Div, Pow, Max, Min, Sum, Mean, Where, PRelu, comparisons):
   a. inputs that carry channels on the aligned axis are coupled (residual Add, SE gate Mul);
   b. a constant whose aligned dim equals the channel count is sliced on that axis
      (per-channel scales and shifts, PRelu slopes); a dim of 1 broadcasts and stays;
   c. an activation whose channels are unknown blocks the others, unless it broadcasts (dim 1).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.constants import ConstantEvaluator, known_dims
from onnxrecede.engine.context import AnalysisContext, EditOp, RewriteContext
from onnxrecede.engine.registry import Axes, Rule, ViewOf, output_axes, register

UNARY_OPS = (
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Gelu", "Erf", "Mish", "Swish", "ThresholdedRelu", "Abs",
    "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos",
    "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not", "IsNaN",
    "IsInf", "Identity", "Dropout", "Cast", "CastLike", "Shrink", "BitwiseNot",
)  # fmt: skip

BROADCAST_OPS = (
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "PRelu", "Mod",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift",
)  # fmt: skip


def _float(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None else float(attr.as_float())


#: unary ops whose output of a constant channel is known, and how (bias compensation)
_CONSTANT_MAPS: dict[str, Callable[[np.ndarray, ir.Node], np.ndarray]] = {
    "Relu": lambda v, n: np.maximum(v, 0.0),
    "LeakyRelu": lambda v, n: np.where(v >= 0, v, v * _float(n, "alpha", 0.01)),
    "Sigmoid": lambda v, n: 1.0 / (1.0 + np.exp(-v)),
    "Tanh": lambda v, n: np.tanh(v),
    "HardSigmoid": lambda v, n: np.clip(_float(n, "alpha", 0.2) * v + _float(n, "beta", 0.5), 0, 1),
    "Identity": lambda v, n: v,
    "Dropout": lambda v, n: v,
}


@register(*UNARY_OPS)
class UnaryRule(Rule):
    behaviour = "pass through"

    def keeps_shape(self, op_type: str) -> bool:
        return True

    def param_source(
        self, node: ir.Node, ops: tuple[EditOp, ...], rank: int
    ) -> tuple[EditOp, ...] | None:
        return None if node.op_type == "Dropout" else ops  # elementwise: the same positions

    def constant_through(
        self, node: ir.Node, values: np.ndarray, const: ConstantEvaluator
    ) -> np.ndarray | None:
        found = _CONSTANT_MAPS.get(node.op_type)
        return None if found is None else found(values, node)

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        xv = ctx.view(node.inputs[0])
        if xv is not None:
            for out in node.outputs:
                ctx.set_view(out, xv.axis, xv.labels)
        return None


@register("Shape", "Size", "Constant", "ConstantOfShape", "RandomNormal", "RandomUniform")
class NoChannelOutputRule(Rule):
    behaviour = "read no channels (shapes, constants)"

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        return None


def _aligned_axis(out_axis: int, out_rank: int, in_rank: int) -> int:
    return out_axis - (out_rank - in_rank)


@register(*BROADCAST_OPS)
class BroadcastRule(Rule):
    behaviour = "couple activations (residuals, SE gates); slice per-channel broadcast constants"

    def keeps_shape(self, op_type: str) -> bool:
        return op_type == "PRelu"  # the slope broadcasts to the data, never the reverse

    def cost_axes(self, node: ir.Node, index: int | None, view_of: ViewOf) -> Axes:
        """PRelu slopes and per-channel Mul/Add constants: kept channels of the data, where
        the constant spans the channel axis (a dim of 1 broadcasts and stays)."""
        if index is None:
            return output_axes(node, view_of)
        if node.op_type not in ("PRelu", "Mul", "Add"):
            return ()
        value = node.inputs[index]
        data = [i for i in node.inputs if i is not None and i is not value]
        view = view_of(data[0]) if data else None
        pd, xd = known_dims(value), known_dims(data[0]) if data else None
        if view is None or pd is None or xd is None:
            return ()
        axis = view.axis - (len(xd) - len(pd))
        return (view.labels,) if 0 <= axis < len(pd) and pd[axis] == len(view) > 1 else ()

    def param_inputs(self, op_type: str) -> tuple[int, ...]:
        # PRelu slopes; per-channel scales and shifts (and a MatMul's bias) of Mul and Add
        return {"PRelu": (1,), "Mul": (0, 1), "Add": (0, 1)}.get(op_type, ())

    def scalar_params(self, op_type: str) -> bool:
        return op_type not in ("Mul", "Add")

    def analyze(self, ctx: AnalysisContext, node: ir.Node) -> str | None:
        ranks = [ctx.rank(v) for v in node.inputs]
        tracked = [(i, ctx.views[v]) for i, v in enumerate(node.inputs) if v in ctx.views]
        if not tracked:
            return None
        if any(r is None for r in ranks):
            return "the rank of an input is unknown"
        out_rank = max(r for r in ranks if r is not None)
        axes = {tv.axis + out_rank - ranks[i] for i, tv in tracked}  # type: ignore[operator]
        if len(axes) != 1:
            return "its inputs carry channels on different axes"
        axis = axes.pop()
        main = max((tv for _, tv in tracked), key=len)
        for _, tv in tracked:
            if len(tv) == len(main):
                ctx.couple(main, tv)
            elif len(tv) != 1:
                return f"inputs with {len(tv)} and {len(main)} channels are combined"
        tracked_idx = {i for i, _ in tracked}
        for i, v in enumerate(node.inputs):
            if v is None or i in tracked_idx:
                continue
            a = _aligned_axis(axis, out_rank, ranks[i])  # type: ignore[arg-type]
            dims = ctx.dims(v)
            dim = None if a < 0 or dims is None else dims[a]
            if a < 0 or dim == 1:
                continue
            if dim != len(main):
                return f"input {i} has {dim} entries on the channel axis, expected {len(main)}"
            if not ctx.is_constant(v):
                return f"input {i} ('{v.name}') has channels onnxrecede cannot trace"
        for out in node.outputs:
            ctx.set_view(out, axis, main.labels)
        return None

    def rewrite(self, ctx: RewriteContext, node: ir.Node) -> None:
        out = node.outputs[0]
        keep = ctx.keep_positions(out)
        view = ctx.view(out)
        if keep is None or view is None or not ctx.changed(out):
            return
        ranks = [ctx.rank(v) for v in node.inputs if v is not None]
        out_rank = max(r for r in ranks if r is not None)
        for i, v in enumerate(node.inputs):
            if v is None or ctx.view(v) is not None:
                continue
            arr = ctx.constant(v)
            if arr is None:
                continue
            a = _aligned_axis(view.axis, out_rank, arr.ndim)
            if a >= 0 and arr.shape[a] == len(view) and len(view) > 1:
                ctx.slice_param(node, i, {a: keep})
