"""The linear consumers of removed channels, and reading and writing their weights and biases.

A *linear consumer* mixes channels with a constant weight; it is where a removed channel's
contribution can be folded back (compensation) or refitted (reconstruction). Cases:

1. ``Conv`` with ``group == 1``: weight ``[Cout, Cin, kh, kw]``, input channels on axis 1;
2. ``Gemm`` with a constant ``B``: ``alpha`` folded into the weight, ``beta * C`` is the bias
   (``C`` per output column, or absent);
3. ``MatMul`` with a constant 2-D right-hand weight ``[K, N]``: the bias is the constant of a
   following ``Add`` (used by nothing else), or a new ``Add`` inserted after it.

Weights are handled as a matrix ``[Cout, Cin, K]`` (``K = kh * kw``, 1 for Gemm/MatMul), biases as
a vector ``[Cout]``, both in the node's current channel numbering. Anything else (grouped convs,
ConvTranspose, a Gemm whose ``C`` is a full matrix) is left alone: :func:`linear_consumers` says
why in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.constants import ConstantEvaluator, make_tensor


@dataclass(frozen=True)
class LinearConsumer:
    """A node whose weight reads channels of which some are removed."""

    node: ir.Node
    data: ir.Value  #: the input that carries the channels
    axis: int  #: the channel axis of ``data``
    kept: np.ndarray  #: kept positions along ``axis`` (original numbering)
    removed: np.ndarray  #: removed positions along ``axis``
    out_keep: np.ndarray | None  #: kept output channels, None when all are kept

    @property
    def name(self) -> str:
        return self.node.name or f"{self.node.op_type}@{id(self.node)}"


def linear_consumers(
    analysis: Analysis, keep_element: np.ndarray
) -> tuple[list[LinearConsumer], list[str]]:
    """Linear consumers that lose input channels, in graph order; and those skipped, with why."""
    const = analysis.constants
    found: dict[ir.Node, LinearConsumer] = {}
    skipped: list[str] = []
    for site in analysis.consume_sites:
        node = site.node
        removed = np.flatnonzero(~keep_element[site.labels])
        if not len(removed) or node in found:
            continue
        reason = _unsupported(node, site.input_index, const)
        data = node.inputs[0]
        if reason is None and data is not None:
            axis = _data_axis(node, analysis.dims(data))
            dims = analysis.dims(data)
            if axis is None or dims is None or dims[axis] != len(site.labels):
                reason = "its input channels are not on a known axis"
            else:
                kept = np.flatnonzero(keep_element[site.labels])
                out_view = analysis.channel_outputs.get(node)
                out_keep = None
                if out_view is not None and not keep_element[out_view.labels].all():
                    out_keep = np.flatnonzero(keep_element[out_view.labels])
                found[node] = LinearConsumer(node, data, axis, kept, removed, out_keep)
                continue
        skipped.append(f"{node.op_type} '{node.name}': {reason or 'no data input'}")
    order = {node: i for i, node in enumerate(analysis.model.graph)}
    return sorted(found.values(), key=lambda c: order[c.node]), skipped


def _unsupported(node: ir.Node, input_index: int, const: ConstantEvaluator) -> str | None:
    if node.op_type == "Conv":
        if node.attributes.get_int("group", 1) != 1:
            return "grouped convolution"
        if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return "auto_pad padding"
        return None if input_index == 1 else "the channels are not read by the weight"
    if node.op_type in ("Gemm", "MatMul"):
        if input_index != 1:
            return "the weight is the left-hand operand"
        w = const.value(node.inputs[1])
        if w is None or w.ndim != 2:
            return "the weight is not a constant matrix"
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
            c = const.value(node.inputs[2])
            if c is None or (c.ndim == 2 and c.shape[0] != 1):
                return "its C input is not a per-column constant"
        return None
    return f"{node.op_type} is not a linear consumer"


def _data_axis(node: ir.Node, dims: tuple[int | None, ...] | None) -> int | None:
    if dims is None:
        return None
    if node.op_type == "Conv":
        return 1
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transA", 0) else 1
    return len(dims) - 1


# ----------------------------------------------------------------------------- conv taps


def weight_kernel(node: ir.Node, const: ConstantEvaluator) -> tuple[int, ...]:
    """The kernel size of a Conv's weight (empty for Gemm/MatMul)."""
    if node.op_type != "Conv":
        return ()
    w = const.value(node.inputs[1])
    return tuple(int(d) for d in w.shape[2:]) if w is not None else ()


def conv_geometry(node: ir.Node, kernel: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and pads (begin..., end...) of a Conv."""
    spatial = len(kernel)
    strides = list(node.attributes.get_ints("strides", [1] * spatial) or [1] * spatial)
    dilations = list(node.attributes.get_ints("dilations", [1] * spatial) or [1] * spatial)
    pads = list(node.attributes.get_ints("pads", [0] * 2 * spatial) or [0] * 2 * spatial)
    return strides, dilations, pads


def tap_sums(
    x: np.ndarray, axis: int, node: ir.Node, kernel: tuple[int, ...]
) -> tuple[np.ndarray, int]:
    """Per input channel (on ``axis``) and kernel tap, the sum of what the tap reads over every
    output position (zero padding included), ``[C, K]``; and the number of output positions.
    Gemm/MatMul have one tap."""
    if node.op_type != "Conv" or not kernel:
        flat = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
        return flat.sum(axis=1, dtype=np.float64)[:, None], flat.shape[1]
    strides, dilations, pads = conv_geometry(node, kernel)
    spatial = len(kernel)
    widths = [(0, 0), (0, 0)] + [(pads[i], pads[i + spatial]) for i in range(spatial)]
    xp = np.pad(x, widths)
    outs = [
        (xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        for i in range(spatial)
    ]
    sums = []
    for tap in np.ndindex(*kernel):
        index = [slice(None), slice(None)] + [
            slice(t * dilations[i], t * dilations[i] + (outs[i] - 1) * strides[i] + 1, strides[i])
            for i, t in enumerate(tap)
        ]
        sums.append(xp[tuple(index)].sum(axis=(0, *range(2, 2 + spatial)), dtype=np.float64))
    return np.stack(sums, axis=1), int(x.shape[0] * np.prod(outs))


# ----------------------------------------------------------------------------- weights


def _gemm_scale(node: ir.Node, name: str) -> float:
    attr = node.attributes.get(name)
    return 1.0 if attr is None else float(attr.as_float())


def read_weight(node: ir.Node, const: ConstantEvaluator) -> np.ndarray:
    """The weight as ``[Cout, Cin, K]`` float64 (Gemm's ``alpha`` included)."""
    w = np.asarray(const.value(node.inputs[1]), dtype=np.float64)
    if node.op_type == "Conv":
        return w.reshape(w.shape[0], w.shape[1], -1)
    if node.op_type == "Gemm":
        w = w if node.attributes.get_int("transB", 0) else w.T
        return (w * _gemm_scale(node, "alpha"))[:, :, None]
    return w.T[:, :, None]


def write_weight(graph: ir.Graph, node: ir.Node, matrix: np.ndarray) -> None:
    """Store a ``[Cout, Cin, K]`` weight back in the node's own layout and dtype."""
    old = node.inputs[1]
    assert old is not None
    dtype = old.dtype.numpy() if old.dtype is not None else np.float32
    if node.op_type == "Conv":
        kernel = tuple(int(d) for d in ConstantEvaluator().value(old).shape[2:])  # type: ignore[union-attr]
        array = matrix.reshape(matrix.shape[0], matrix.shape[1], *kernel)
    elif node.op_type == "Gemm":
        w = matrix[:, :, 0] / _gemm_scale(node, "alpha")
        array = w if node.attributes.get_int("transB", 0) else w.T
    else:
        array = matrix[:, :, 0].T
    set_constant_input(graph, node, 1, np.ascontiguousarray(array, dtype=dtype), "weight")


# ----------------------------------------------------------------------------- biases


def _bias_add(node: ir.Node, const: ConstantEvaluator) -> tuple[ir.Node, int] | None:
    """A MatMul's following ``Add`` of a per-column constant, used by nothing else."""
    out = node.outputs[0]
    uses = list(out.uses())
    if len(uses) != 1 or out.is_graph_output():
        return None
    add = uses[0].node
    if add.op_type != "Add" or len(add.inputs) != 2:
        return None
    other = 1 - uses[0].idx
    value = add.inputs[other]
    c = const.value(value)
    if value is None or c is None or len(value.uses()) != 1 or any(d != 1 for d in c.shape[:-1]):
        return None
    return add, other


def read_bias(node: ir.Node, cout: int, const: ConstantEvaluator) -> np.ndarray:
    """The bias as a float64 vector ``[Cout]`` (zeros where the node has none)."""
    if node.op_type == "MatMul":
        found = _bias_add(node, const)
        if found is None:
            return np.zeros(cout)
        c = const.value(found[0].inputs[found[1]])
    else:
        c = const.value(node.inputs[2]) if len(node.inputs) > 2 else None
        if c is not None and node.op_type == "Gemm":
            c = c * _gemm_scale(node, "beta")
    if c is None:
        return np.zeros(cout)
    return np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (cout,)).copy()


def write_bias(graph: ir.Graph, node: ir.Node, bias: np.ndarray, dtype: np.dtype) -> None:
    """Set the node's bias vector (creating the input, or a MatMul's ``Add``, if needed)."""
    const = ConstantEvaluator()
    if node.op_type == "Conv":
        set_constant_input(graph, node, 2, bias.astype(dtype), "bias")
    elif node.op_type == "Gemm":
        beta = _gemm_scale(node, "beta")
        c = node.inputs[2] if len(node.inputs) > 2 else None
        if c is None or beta == 0:
            node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
            beta = 1.0
        set_constant_input(graph, node, 2, (bias / beta).astype(dtype), "bias")
    else:
        found = _bias_add(node, const)
        if found is None:
            found = _insert_add(graph, node)
        add, index = found
        set_constant_input(graph, add, index, bias.astype(dtype), "bias")


def _insert_add(graph: ir.Graph, node: ir.Node) -> tuple[ir.Node, int]:
    out = node.outputs[0]
    uses = list(out.uses())
    placeholder = ir.Value(name=_unique(graph, f"{node.name or 'matmul'}_bias"))
    add = ir.Node("", "Add", [out, placeholder], name=_unique(graph, f"{node.name}_bias_add"))
    result = add.outputs[0]
    result.name = _unique(graph, f"{out.name}_biased")
    result.dtype = out.dtype  # type: ignore[assignment]
    result.shape = out.shape
    for use in uses:
        use.node.replace_input_with(use.idx, result)
    if out.is_graph_output():  # the output keeps its name: the Add now produces it
        graph.outputs[graph.outputs.index(out)] = result
        name = out.name
        out.name = _unique(graph, f"{name}_matmul")
        result.name = name
    graph.insert_after(node, add)
    return add, 1


def _unique(graph: ir.Graph, base: str) -> str:
    names = set(graph.initializers)
    for n in graph:
        names.update(o.name for o in n.outputs if o.name)
    name, i = base, 1
    while name in names:
        name, i = f"{base}_{i}", i + 1
    return name


def set_constant_input(
    graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, what: str
) -> None:
    """Give ``node`` a new constant input ``index``: in place when it owns an initializer."""
    old = node.inputs[index] if index < len(node.inputs) else None
    if old is not None and old.is_initializer() and len(old.uses()) == 1 and old.name:
        old.const_value = make_tensor(array, old.name)
        old.shape = ir.Shape(array.shape)
        return
    name = _unique(graph, f"{node.name or node.op_type}.{what}")
    value = ir.Value(name=name, shape=ir.Shape(array.shape), const_value=make_tensor(array, name))
    value.dtype = value.const_value.dtype  # type: ignore[union-attr]
    graph.register_initializer(value)
    if index >= len(node.inputs):
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)
    if old is not None and not old.uses() and old.is_initializer() and old.name:
        graph.initializers.pop(old.name, None)
