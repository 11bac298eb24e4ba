"""Cost counts of an ONNX graph: multiply-accumulates (MACs) and parameters.

The convention, stated exactly because published counters disagree by a few percent:

MACs (after ONNX shape inference; dynamic batch dims count as 1 unless ``input_shapes`` binds
them). Only these ops are counted; bias additions, activations, pooling, normalisation and
element-wise ops count 0.

1. ``Conv``: ``N * Cout * prod(out spatial) * (Cin / group) * prod(kernel)``, any rank.
2. ``ConvTranspose``: ``N * Cin * prod(in spatial) * (Cout / group) * prod(kernel)``.
3. ``Gemm``: ``M * N * K`` (``transA``/``transB`` honoured).
4. ``MatMul``: ``batch * M * N * K`` (broadcast batch dims of the output).

FLOPs are ``2 * MACs``.

Parameters: the elements of the *constant* tensors (initializers or ``Constant`` nodes, also when
reached through a cast, sigmoid, reshape or similar one-input op) that feed

1. ``Conv`` / ``ConvTranspose`` weight and bias;
2. ``Gemm`` A, B and C and ``MatMul`` A and B (usually only the weight is constant);
3. ``BatchNormalization`` scale and shift, NOT its running mean and variance;
   ``InstanceNormalization``, ``LayerNormalization`` and ``GroupNormalization`` scale and bias;
4. ``PRelu`` slopes;
5. ``Mul`` / ``Add`` operands with more than one element (per-channel scales and shifts, biases
   of a MatMul); scalar constants are not parameters.

A tensor shared by several nodes is counted once, on the first node that uses it.
Nodes whose shapes cannot be inferred count 0 MACs and are listed in ``Cost.unresolved``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import onnx
import onnx_ir as ir

from onnxrecede.engine.constants import known_dims
from onnxrecede.engine.registry import rule_for
from onnxrecede.errors import InputError

logger = logging.getLogger(__name__)

#: Initializers larger than this are handed to shape inference as typed inputs, without data,
#: so that the proto stays small whatever the model size.
_BIG_TENSOR_BYTES = 1024

Shape = tuple[int | None, ...]


@dataclasses.dataclass(frozen=True)
class NodeCost:
    """Cost of one node."""

    name: str
    op_type: str
    macs: int
    params: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclasses.dataclass(frozen=True)
class Cost:
    """MACs and parameters of a model; see the module docstring for the convention."""

    macs: int
    params: int
    per_node: tuple[NodeCost, ...] = ()
    unresolved: tuple[str, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "macs": self.macs,
            "flops": self.flops,
            "params": self.params,
            "unresolved": list(self.unresolved),
            "per_node": [
                {"name": n.name, "op_type": n.op_type, "macs": n.macs, "params": n.params}
                for n in self.per_node
                if n.macs or n.params
            ],
        }


def count_cost(
    model: ir.Model | onnx.ModelProto | str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Cost:
    """Count MACs and parameters of ``model`` without modifying it.

    ``input_shapes`` binds graph inputs to concrete shapes (e.g. ``{"input": (8, 3, 224, 224)}``);
    otherwise a dynamic first dim counts as 1 and other dynamic dims stay unknown.
    """
    ir_model = _as_ir_model(model)
    shapes = _inferred_shapes(ir_model, input_shapes or {})
    param_counter = _ParamCounter()
    per_node: list[NodeCost] = []
    unresolved: list[str] = []
    for index, node in enumerate(ir.traversal.RecursiveGraphIterator(ir_model.graph)):
        name = node.name or f"{node.op_type}_{index}"
        macs = 0
        rule = rule_for(node)
        if rule is not None:
            counted = rule.macs(node, functools.partial(_shape_of, node, shapes=shapes))
            if counted is None:
                unresolved.append(name)
            else:
                macs = counted
        per_node.append(NodeCost(name, node.op_type, macs, param_counter.count(node)))
    if unresolved:
        logger.warning(
            "MACs of %d node(s) are unknown (dynamic shapes; bind them with input shapes): %s",
            len(unresolved),
            ", ".join(unresolved[:5]) + (" ..." if len(unresolved) > 5 else ""),
        )
    return Cost(
        macs=sum(n.macs for n in per_node),
        params=sum(n.params for n in per_node),
        per_node=tuple(per_node),
        unresolved=tuple(unresolved),
    )


def _as_ir_model(model: ir.Model | onnx.ModelProto | str | os.PathLike[str]) -> ir.Model:
    from onnxrecede.io.model_files import legacy_dims_dynamic

    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        # Wraps the tensors of the proto without copying their data.
        return legacy_dims_dynamic(ir.serde.deserialize_model(model))
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise InputError(f"model file not found: {path}")
    try:
        return legacy_dims_dynamic(ir.load(path))  # external data stays in its file
    except Exception as e:  # onnx/protobuf raise many types for a corrupt file
        raise InputError(f"cannot read ONNX model {path}: {e}") from None


# Shape inference on a light copy -----------------------------------------------------------


def _inferred_shapes(
    model: ir.Model, input_shapes: Mapping[str, Sequence[int]]
) -> dict[str, Shape]:
    """Shapes of every named value after ONNX shape inference on a light clone of ``model``."""
    light = model.clone()  # new graph objects; tensors are shared, never written
    graph = light.graph
    bind_inputs(graph, input_shapes)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for out in node.outputs:
            out.shape = None  # stale shapes after pruning would make inference fail
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        if value.shape is None and tensor is not None:
            value.shape = ir.Shape(tensor.shape.numpy())
        if value.dtype is None and tensor is not None:
            value.dtype = tensor.dtype
        if tensor is None or tensor.nbytes > _BIG_TENSOR_BYTES:
            assert value.name is not None
            graph.initializers.pop(value.name)
            if value not in graph.inputs:
                graph.inputs.append(value)
    from onnxrecede.engine.shapes import infer_shapes

    infer_shapes(light)  # ONNX inference, bridged where it stops (function ops, computed bounds)
    shapes: dict[str, Shape] = {}
    for value in [*graph.inputs, *graph.initializers.values()]:
        if value.name and value.shape is not None:
            shapes[value.name] = tuple(d if isinstance(d, int) else None for d in value.shape)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for out in node.outputs:
            if out.name and out.shape is not None:
                shapes[out.name] = tuple(d if isinstance(d, int) else None for d in out.shape)
    return shapes


def bind_inputs(graph: ir.Graph, input_shapes: Mapping[str, Sequence[int]]) -> None:
    """Set the shapes of the graph inputs named in ``input_shapes`` (InputError for a name
    that is not a model input)."""
    initializer_names = set(graph.initializers)
    inputs = {v.name: v for v in graph.inputs if v.name not in initializer_names}
    unknown = sorted(set(input_shapes) - set(inputs))
    if unknown:
        raise InputError(
            f"input shape given for {', '.join(unknown)}, which is not a model input; "
            f"model inputs: {', '.join(str(n) for n in inputs) or '(none)'}"
        )
    for name, value in inputs.items():
        if name is not None and name in input_shapes:
            dims = tuple(int(d) for d in input_shapes[name])
            if value.shape is not None and len(value.shape) != len(dims):
                raise InputError(
                    f"input shape for '{name}' has {len(dims)} dims but the model input has "
                    f"rank {len(value.shape)}"
                )
            value.shape = ir.Shape(dims)
        elif value.shape is not None and len(value.shape) and not _is_int(value.shape[0]):
            value.shape = ir.Shape([1, *value.shape[1:]])


def _is_int(dim: object) -> bool:
    return isinstance(dim, int)


def _collect_shapes(graph: onnx.GraphProto) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None
                for d in vi.type.tensor_type.shape.dim
            )
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(attr.t.dims)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                shapes.update(_collect_shapes(sub))
    return shapes


# Shapes for the MAC counters (one per rule, onnxrecede/engine/rules) -----------------------


def _shape_of(
    node: ir.Node, index: int, shapes: Mapping[str, Shape], output: bool = False
) -> tuple[int, ...] | None:
    """Fully known shape of an input (or output) of ``node``, else None."""
    values = node.outputs if output else node.inputs
    value = values[index] if index < len(values) else None
    if value is None or value.name is None:
        return None
    shape = shapes.get(value.name)
    if shape is None or any(d is None for d in shape):
        return None
    return tuple(int(d) for d in shape if d is not None)


# Parameters ---------------------------------------------------------------------------------

#: One-data-input ops through which a constant is traced back to its source tensor.
_PASS_THROUGH = frozenset(
    {
        "Identity", "Cast", "CastLike", "Sigmoid", "Tanh", "Neg", "Abs", "Exp", "Softplus",
        "Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten", "DequantizeLinear",
    }
)  # fmt: skip
_MAX_TRACE = 8


class _ParamCounter:
    """Counts each constant parameter tensor once, on the first node that uses it."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def count(self, node: ir.Node) -> int:
        return sum(numel for _, numel in parameter_inputs(node, self._seen))


def parameter_inputs(node: ir.Node, seen: set[int]) -> Iterator[tuple[int, int]]:
    """(input index, element count) of each constant parameter tensor of ``node`` (as its rule
    says) not in ``seen``, which is updated: a tensor shared by several nodes counts once."""
    rule = rule_for(node)
    if rule is None:
        return
    for i in rule.param_inputs(node.op_type):
        source = _constant_source(node.inputs[i] if i < len(node.inputs) else None)
        if source is None:
            continue
        key, numel = source
        if numel <= 1 and not rule.scalar_params(node.op_type) or key in seen:
            continue
        seen.add(key)
        yield i, numel


def _constant_source(value: ir.Value | None) -> tuple[int, int] | None:
    """(identity, element count) of the constant tensor behind ``value``, if there is one."""
    for _ in range(_MAX_TRACE):
        if value is None:
            return None
        if value.is_initializer() or value.const_value is not None and value.producer() is None:
            numel = _numel(value)
            return None if numel is None else (id(value), numel)
        producer = value.producer()
        if producer is None:
            return None  # a graph input
        if producer.op_type == "Constant":
            attr = producer.attributes.get("value")
            if attr is None or not isinstance(attr.value, ir.TensorProtocol):
                return None
            return id(value), math.prod(attr.value.shape.numpy())
        if producer.op_type not in _PASS_THROUGH or not producer.inputs:
            return None
        value = producer.inputs[0]
    return None


def _numel(value: ir.Value) -> int | None:
    if value.const_value is not None:
        return math.prod(value.const_value.shape.numpy())
    dims = known_dims(value)
    return None if dims is None else math.prod(dims)
