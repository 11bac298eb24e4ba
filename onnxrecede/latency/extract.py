"""A unit at given kept counts as a small standalone model (random weights of the sliced sizes).

Cases:
1. The data input keeps the unit's real shape (batch and spatial dims bound), with its channel
   axis set to the kept input count; the weight, bias and the followers' per-channel
   parameters take the kept output count.
2. A depthwise conv (multiplier m) keeps ``k_out / m`` input channels and ``group`` becomes
   that count.
3. Followers keep their attributes; a follower whose parameters are neither per-channel
   vectors nor scalars ends the chain (it is not measured with the unit).
4. The signature (ops, attributes, shapes, dtype) names the measurement: two units with equal
   signatures share one cache entry, whatever model they come from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper

from onnxrecede.latency.units import Unit

OPSET = 17


@dataclass(frozen=True)
class Extracted:
    model: bytes
    signature: str
    feeds: dict[str, np.ndarray]


def _dims(value: ir.Value | None) -> list[int]:
    assert value is not None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        raise ValueError(f"value '{value.name}' has no static shape")
    return [int(d) for d in shape]  # type: ignore[arg-type]


def _np_dtype(value: ir.Value | None) -> np.dtype:
    if value is not None and value.dtype is not None:
        return np.dtype(value.dtype.numpy())
    return np.dtype(np.float32)


def _in_channel_axis(unit: Unit, rank: int) -> int:
    op = unit.node.op_type
    if op == "Gemm":
        return 0 if _flag(unit.node, "transA") else 1
    if op == "MatMul":
        return rank - 1
    return 1


def _flag(node: ir.Node, name: str) -> bool:
    attr = node.attributes.get(name)
    return attr is not None and bool(attr.value)


def _weight_shape(unit: Unit, k_in: int, k_out: int) -> list[int]:
    node = unit.node
    w = _dims(node.inputs[1])
    op = node.op_type
    if op == "Conv":
        return [k_out, 1 if unit.depthwise else w[1] * k_in // max(1, _full_in(unit)), *w[2:]]
    if op == "ConvTranspose":
        return [k_in, k_out, *w[2:]]
    if op == "Gemm" and _flag(node, "transB"):
        return [k_out, k_in]
    return [k_in, k_out]


def _full_in(unit: Unit) -> int:
    x = _dims(unit.node.inputs[0])
    return x[_in_channel_axis(unit, len(x))]


def unit_model(unit: Unit, k_in: int, k_out: int, seed: int = 0) -> Extracted:
    """Case 1-3: the unit with ``k_in`` input and ``k_out`` output channels."""
    node = unit.node
    rng = np.random.default_rng(seed)
    dtype = _np_dtype(node.inputs[0])
    x_dims = _dims(node.inputs[0])
    x_dims[_in_channel_axis(unit, len(x_dims))] = k_in
    y_dims = _dims(node.outputs[0])
    y_dims[1 if node.op_type.startswith("Conv") else len(y_dims) - 1] = k_out
    inits = [_rand("W", _weight_shape(unit, k_in, k_out), dtype, rng)]
    inputs = ["X", "W"]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        inits.append(_rand("B", _bias_shape(unit, k_out), dtype, rng))
        inputs.append("B")
    head = _node_proto(node, inputs, "Y0")
    if unit.depthwise:
        _set_group(head, k_in)
    nodes, out = [head], "Y0"
    full_out = _dims(node.outputs[0])[1 if node.op_type.startswith("Conv") else -1]
    for i, follower in enumerate(unit.followers):
        params = _follower_params(follower, i, full_out, k_out, dtype, rng)
        if params is None:
            break
        names = [out] + [p.name for p in params]
        nodes.append(_node_proto(follower, names, f"Y{i + 1}"))
        inits.extend(params)
        out = f"Y{i + 1}"
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    graph = helper.make_graph(
        nodes, "unit", [helper.make_tensor_value_info("X", elem, x_dims)],
        [helper.make_tensor_value_info(out, elem, y_dims)], initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    feeds = {"X": rng.standard_normal(x_dims).astype(dtype)}
    return Extracted(model.SerializeToString(), _signature(model), feeds)


def _bias_shape(unit: Unit, k_out: int) -> list[int]:
    b = _dims(unit.node.inputs[2])
    return [k_out] if len(b) <= 1 else [*b[:-1], k_out]


def _rand(
    name: str, shape: list[int], dtype: np.dtype, rng: np.random.Generator
) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(dtype), name)


def _follower_params(
    node: ir.Node, index: int, full: int, kept: int, dtype: np.dtype, rng: np.random.Generator
) -> list[onnx.TensorProto] | None:
    params = []
    for j, value in enumerate(node.inputs[1:], start=1):
        if value is None or value.const_value is None:
            if value is None:
                continue
            return None
        array = value.const_value.numpy()
        name = f"P{index}_{j}"
        if array.ndim == 1 and array.shape[0] == full:
            fresh = np.abs(rng.standard_normal(kept)) + 0.5  # positive: BN variances
            params.append(numpy_helper.from_array(fresh.astype(array.dtype), name))
        elif array.size == 1:
            params.append(numpy_helper.from_array(array, name))
        else:
            return None
    del dtype
    return params


def _node_proto(node: ir.Node, inputs: list[str], output: str) -> onnx.NodeProto:
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    del proto.output[:]
    proto.input.extend(inputs)
    proto.output.append(output)
    proto.name = ""
    return proto


def _set_group(proto: onnx.NodeProto, group: int) -> None:
    for attr in proto.attribute:
        if attr.name == "group":
            attr.i = group


def _signature(model: onnx.ModelProto) -> str:
    graph = model.graph
    parts = {
        "nodes": [
            [n.op_type, sorted(str(helper.printable_attribute(a)) for a in n.attribute)]
            for n in graph.node
        ],
        "shapes": [[t.name, list(t.dims), t.data_type] for t in graph.initializer],
        "inputs": [
            [
                i.name,
                [d.dim_value for d in i.type.tensor_type.shape.dim],
                i.type.tensor_type.elem_type,
            ]
            for i in graph.input
        ],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
