"""Shape inference that goes further than ``onnx.shape_inference`` alone.

Rounds of:
1. ONNX shape inference on a light copy (large initializers become typed inputs), merged back
   for tensor values only: sequence and optional types stay as exported;
2. bridging nodes whose outputs are still unknown although their inputs are known:
   a. a shape-preserving op (activations, normalisations; ONNX cannot type some function ops
      such as GroupNormalization) gets its input's shape;
   b. any other op is inferred alone, with its constant-computable inputs (Slice bounds built
      from Shape -> Gather -> Div, say) given as initializers.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

from onnxrecede.engine.constants import ConstantEvaluator, detached_node_proto, known_shape
from onnxrecede.engine.registry import rule_for

logger = logging.getLogger(__name__)


_MAX_CONST_ELEMENTS = 1 << 16


def _merge(model: ir.Model, inferred: onnx.ModelProto) -> None:
    found = {vi.name: vi.type for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for node in model.graph:
        for value in node.outputs:
            type_proto = found.get(value.name or "")
            if type_proto is None or not type_proto.HasField("tensor_type"):
                continue
            shape = ir.serde.deserialize_type_proto_for_shape(type_proto)
            if shape is not None:
                value.shape = shape
            if value.type is None:
                value.type = ir.serde.deserialize_type_proto_for_type(type_proto)


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(
        proto, check_type=False, strict_mode=False, data_prop=True
    )


def _onnx_round(model: ir.Model) -> None:
    try:
        _merge(model, _c_api_utils.call_onnx_api(_infer, model))
    except Exception as e:  # inference errors come in many types
        logger.debug("shape inference failed: %s", e)


def _keeps_shape(node: ir.Node) -> bool:
    rule = rule_for(node)
    return rule is not None and rule.keeps_shape(node.op_type)


def _static(shape: ir.Shape | None) -> bool:
    return known_shape(shape) is not None


def _infer_alone(model: ir.Model, node: ir.Node, const: ConstantEvaluator) -> bool:
    """Infer one node's outputs from its known inputs and constant-computable ones."""
    inputs, inits, names = [], [], []
    for i, v in enumerate(node.inputs):
        name = f"in{i}"
        if v is None:
            names.append("")
            continue
        names.append(name)
        arr = const.value(v)
        if arr is not None and arr.size <= _MAX_CONST_ELEMENTS:
            inits.append(onnx.numpy_helper.from_array(arr, name))
        elif v.shape is not None and v.dtype is not None:
            dims = [d if isinstance(d, int) else None for d in v.shape]
            inputs.append(onnx.helper.make_tensor_value_info(name, v.dtype.value, dims))
        else:
            return False
    proto, outs = detached_node_proto(node, names)
    graph = onnx.helper.make_graph(
        [proto], "node", inputs, [onnx.ValueInfoProto(name=o) for o in outs], initializer=inits
    )
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()]
    try:
        inferred = _infer(onnx.helper.make_model(graph, opset_imports=opsets, ir_version=10))
    except Exception as e:
        logger.debug("cannot infer %s %s alone: %s", node.op_type, node.name, e)
        return False
    found = {vi.name: vi.type for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    done = False
    for o, value in zip(outs, node.outputs):
        t = found.get(o)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            continue
        shape = ir.serde.deserialize_type_proto_for_shape(t)
        if _static(shape) or value.shape is None:
            done = done or value.shape != shape
            value.shape = shape
            if value.type is None:
                value.type = ir.serde.deserialize_type_proto_for_type(t)
    return done


def infer_shapes(model: ir.Model, max_rounds: int = 6) -> None:
    """Fill in the shapes of ``model``'s values in place (values stay as they are on failure)."""
    const = ConstantEvaluator()
    for _ in range(max_rounds):
        _onnx_round(model)
        bridged = False
        for node in model.graph:
            if not node.outputs or all(_static(o.shape) for o in node.outputs):
                continue
            src = node.inputs[0] if node.inputs else None
            if _keeps_shape(node) and src is not None and src.shape is not None:
                if node.outputs[0].shape is None:
                    node.outputs[0].shape = src.shape
                    if node.outputs[0].dtype is None:
                        node.outputs[0].dtype = src.dtype  # type: ignore[assignment]
                    bridged = True
            elif (
                node.domain in ("", "ai.onnx")
                and all(
                    v is None or _static(v.shape) or v.const_value is not None for v in node.inputs
                )
                and _infer_alone(model, node, const)
            ):
                bridged = True
        if not bridged:
            return
