"""MatMul between two activations: scores = q.k^T and context = attention.v (see
:mod:`onnxrecede.engine.rules.heads`, case 3).

Cases:
1. channels on aligned batch axes of A and B (the heads of q and k, of the attention and v)
   are coupled and pass to the output's batch axis; an operand whose aligned batch dim is 1 or
   missing broadcasts;
2. channels on both contracted axes (A's last, B's second last: the head dims of q and k) are
   coupled and leave the output without channels;
3. channels on A's rows or B's columns (v's head dims) pass to the output's rows or columns;
4. barriers: channels on one contracted axis only; on a batch axis where the other operand has
   the same untraced extent; on two different output axes; an operand of unknown or vector rank.
Every tracked input is a mask site (the masked reference zeroes its removed channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from onnxrecede.engine.context import AnalysisContext
from onnxrecede.engine.spaces import ChannelView


@dataclass(frozen=True)
class Role:
    """Where an operand's channels are: ``batch`` (offset from the end), ``inner``, ``rows``
    (A) or ``cols`` (B)."""

    kind: str
    offset: int = 0


def _role(view: ChannelView, rank: int, is_a: bool) -> Role:
    if view.axis < rank - 2:
        return Role("batch", view.axis - rank)
    if is_a:
        return Role("rows" if view.axis == rank - 2 else "inner")
    return Role("inner" if view.axis == rank - 2 else "cols")


def activation_matmul(ctx: AnalysisContext, node: ir.Node) -> str | None:
    """The channel behaviour of a MatMul whose operands are both activations."""
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    av, bv = ctx.view(a), ctx.view(b)
    if av is None and bv is None:
        return None
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra is None or rb is None or ra < 2 or rb < 2:
        return "MatMul between activations with an operand of unknown or vector rank"
    rout = max(ra, rb)
    roles = (
        None if av is None else _role(av, ra, True),
        None if bv is None else _role(bv, rb, False),
    )
    reason = _couple(ctx, node, av, bv, roles)
    if reason is not None:
        return reason
    target = _output_axis(roles, rout)
    if isinstance(target, str):
        return target
    for i, (view, role) in enumerate(zip((av, bv), roles)):
        if view is not None and role is not None:
            ctx.mask_input(node, i, view.axis, view.labels)
    carrier = next(
        (
            v
            for v, r in zip((av, bv), roles)
            if v is not None and r is not None and r.kind != "inner"
        ),
        None,
    )
    if target is not None and carrier is not None:
        ctx.set_view(out, target, carrier.labels)
    return None


def _couple(
    ctx: AnalysisContext,
    node: ir.Node,
    av: ChannelView | None,
    bv: ChannelView | None,
    roles: tuple[Role | None, Role | None],
) -> str | None:
    ra, rb = roles
    if av is not None and bv is not None and ra is not None and rb is not None:
        if ra.kind != rb.kind or ra.offset != rb.offset:
            if "inner" in (ra.kind, rb.kind):
                return "MatMul between activations contracts channels of one operand only"
            return "MatMul between activations carries channels on two different output axes"
        if len(av) != len(bv):
            return f"MatMul between activations couples {len(av)} and {len(bv)} channels"
        ctx.couple(av, bv)
        return None
    single, role, other = (av, ra, node.inputs[1]) if av is not None else (bv, rb, node.inputs[0])
    assert single is not None and role is not None
    if role.kind == "inner":
        return "MatMul between activations contracts channels of one operand only"
    if role.kind == "batch":
        dims = ctx.dims(other)
        if dims is None:
            return "the rank of its other operand is unknown"
        pos = len(dims) + role.offset
        if pos >= 0 and dims[pos] != 1:
            return "its other operand has untraced channels on the same batch axis"
    return None


def _output_axis(roles: tuple[Role | None, Role | None], rout: int) -> int | str | None:
    ra, rb = roles
    axes = set()
    for role in (ra, rb):
        if role is None or role.kind == "inner":
            continue
        axes.add({"batch": rout + role.offset, "rows": rout - 2, "cols": rout - 1}[role.kind])
    if len(axes) > 1:
        return "MatMul between activations carries channels on two different output axes"
    return axes.pop() if axes else None
