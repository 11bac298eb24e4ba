"""Reading constant tensors: initializers, Constant nodes, and small constant subgraphs.

Exporters compute some parameters at run time from constants only: the dynamo exporter builds a
missing Conv bias as ``Shape(W) -> Expand -> CastLike(zero, x)``; a bounded BatchNorm exported by
TorchScript feeds ``Sigmoid(theta)`` into the scale. :class:`ConstantEvaluator` evaluates such a
cone with the ONNX reference implementation when every leaf is constant. ``Shape`` of a tensor of
static shape and ``CastLike`` (whose second input only names a type) count as constant.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

logger = logging.getLogger(__name__)

#: ops never evaluated: they are not pure functions of their inputs, or too costly.
_NOT_FOLDABLE = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Loop",
    "If",
    "Scan",
}
#: largest folded result, in elements; bigger cones are left alone.
MAX_FOLD_ELEMENTS = 1 << 24


def constant_node_value(node: ir.Node) -> np.ndarray | None:
    """The value of a ``Constant`` node, whatever attribute holds it."""
    attrs = node.attributes
    for name in ("value", "sparse_value"):
        if name in attrs:
            t = attrs[name].as_tensor()
            return np.asarray(t.numpy())
    simple: dict[str, type] = {
        "value_float": np.float32,
        "value_floats": np.float32,
        "value_int": np.int64,
        "value_ints": np.int64,
    }
    for name, dtype in simple.items():
        if name in attrs:
            return np.asarray(attrs[name].value, dtype=dtype)
    if "value_string" in attrs or "value_strings" in attrs:
        return None
    return None


class ConstantEvaluator:
    """Evaluates values that depend on constants only (memoised)."""

    def __init__(self, max_depth: int = 16) -> None:
        self.max_depth = max_depth
        self._cache: dict[ir.Value, np.ndarray | None] = {}  # by value: ids get reused

    def direct(self, value: ir.Value | None) -> np.ndarray | None:
        """An initializer or Constant output, without evaluating anything."""
        if value is None:
            return None
        if value.const_value is not None:
            return np.asarray(value.const_value.numpy())
        node = value.producer()
        if node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            return constant_node_value(node)
        return None

    def value(self, value: ir.Value | None, depth: int = 0) -> np.ndarray | None:
        """The constant value of ``value``, or None if it depends on a graph input."""
        if value is None:
            return None
        result = self.direct(value)
        if result is not None:
            return result  # not cached: a weight read lazily from its file stays there
        key = value
        if key in self._cache:
            return self._cache[key]
        if depth < self.max_depth:
            result = self._evaluate(value, depth)
        self._cache[key] = result
        return result

    def _evaluate(self, value: ir.Value, depth: int) -> np.ndarray | None:
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDABLE:
            return None
        if node.op_type == "Shape":
            return _static_shape(node)
        if node.op_type == "CastLike" and len(node.inputs) == 2:
            src = self.value(node.inputs[0], depth + 1)
            target = node.inputs[1]
            if src is None or target is None or target.dtype is None:
                return None
            return src.astype(target.dtype.numpy())
        feeds: dict[str, np.ndarray] = {}
        names: list[str] = []
        for i, inp in enumerate(node.inputs):
            if inp is None:
                names.append("")
                continue
            arr = self.value(inp, depth + 1)
            if arr is None:
                return None
            name = f"in{i}"
            names.append(name)
            feeds[name] = arr
        return self._run(node, names, feeds, value)

    def _run(
        self, node: ir.Node, names: list[str], feeds: dict[str, np.ndarray], value: ir.Value
    ) -> np.ndarray | None:
        from onnx.reference import ReferenceEvaluator

        proto, _ = detached_node_proto(node, names)
        try:
            results: list[Any] = list(ReferenceEvaluator(proto).run(None, feeds))
        except Exception as e:  # the reference runtime raises many types
            logger.debug("cannot fold %s %s: %s", node.op_type, node.name, e)
            return None
        out = np.asarray(results[value.index() or 0])
        if out.size > MAX_FOLD_ELEMENTS:
            return None
        return out


def detached_node_proto(node: ir.Node, input_names: list[str]) -> tuple[onnx.NodeProto, list[str]]:
    """The node as a NodeProto with its inputs renamed and outputs named ``out0, out1, ...``."""
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(input_names)
    outs = [f"out{i}" for i in range(len(node.outputs))]
    del proto.output[:]
    proto.output.extend(outs)
    return proto, outs


def known_dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """The fully known dims of a value (its constant's shape first), else None."""
    if value is None:
        return None
    return known_shape(value.const_value.shape if value.const_value is not None else value.shape)


def known_shape(shape: Any) -> tuple[int, ...] | None:
    """A shape's dims when every one is a known int, else None."""
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _static_shape(node: ir.Node) -> np.ndarray | None:
    found = known_dims(node.inputs[0])
    if found is None:
        return None
    dims = list(found)
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(dims))
    return np.asarray(dims[slice(start, end)], dtype=np.int64)


def as_int_list(arr: np.ndarray | None) -> list[int] | None:
    if arr is None:
        return None
    return [int(x) for x in np.asarray(arr).ravel().tolist()]


def make_tensor(array: np.ndarray, name: str | None) -> ir.Tensor:
    return ir.Tensor(np.ascontiguousarray(array), name=name)
