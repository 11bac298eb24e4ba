"""Random importance vectors for every channel-producing node of a model, keyed by node name."""

from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import numpy_helper


def _constant_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of initializers and Constant-node outputs, by tensor name."""
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(numpy_helper.to_array(attr.t).shape)
    return shapes


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def output_channels(node: onnx.NodeProto, weight: tuple[int, ...]) -> int | None:
    """Output-channel count of a Conv / ConvTranspose / Gemm / MatMul, given its weight shape."""
    if node.op_type == "Conv":
        return weight[0]
    if node.op_type == "ConvTranspose":
        return weight[1] * _attr(node, "group", 1)
    if node.op_type == "Gemm":
        return weight[0] if _attr(node, "transB", 0) else weight[1]
    if node.op_type == "MatMul" and len(weight) >= 2:
        return weight[-1]
    return None


def importances_for(model: onnx.ModelProto) -> dict[str, int]:
    """Output-channel count of each Conv, ConvTranspose, Gemm and constant-weight MatMul.

    Keys are node names; a channel node without a name raises ``ValueError``.
    """
    shapes = _constant_shapes(model)
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        weight = shapes.get(node.input[1])
        n = output_channels(node, weight) if weight else None
        if n is None:
            continue
        if not node.name:
            raise ValueError(f"{node.op_type} node producing '{node.output[0]}' has no name")
        counts[node.name] = n
    return counts


def make_random_importances(
    model_path: str | os.PathLike[str], seed: int = 0
) -> dict[str, list[float]]:
    """Uniform [0, 1) importances for each Conv, ConvTranspose, Gemm and constant-weight MatMul.

    Keys are node names; a channel node without a name raises ``ValueError``.
    """
    model = onnx.load(os.fspath(model_path), load_external_data=False)
    rng = np.random.default_rng(seed)
    return {name: [float(v) for v in rng.random(n)] for name, n in importances_for(model).items()}
