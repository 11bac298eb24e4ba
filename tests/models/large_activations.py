"""A conv chain whose activations reach 1e5..1e7 (large weights, folded-BN-like scales).

Pruning it and running the pruned model against the masked reference differs only by float32
rounding, yet that rounding is far above 1e-5 in absolute terms and, for outputs that are near
zero after cancelling large terms, far above 1e-5 relative to the element itself: the case of
issue 7 (ImageNet nets with folded BatchNorm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: conv widths: input 4 -> 16 -> 16 -> 8 output channels (the output is a graph output)
WIDTHS = (4, 16, 16, 8)
#: node names whose output channels can be scored (the last conv feeds the graph output)
SCORED = ("conv0", "conv1")


def build(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    x = "x"
    last = len(WIDTHS) - 2
    for i, (cin, cout) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
        k = 1 if i == last else 3
        w = rng.standard_normal((cout, cin, k, k)) * (100.0 if i == 0 else 1.0)
        out = "y" if i == last else f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv", [x, init(f"conv{i}.weight", w), init(f"conv{i}.bias", rng.normal(0, 1, cout))],
                [out], name=f"conv{i}", kernel_shape=[k, k], pads=[k // 2] * 4,
            )
        )  # fmt: skip
        if i == last:
            break
        scale = rng.uniform(50, 150, cout) if i == 0 else rng.uniform(5, 15, cout)
        params = [
            init(f"bn{i}.{p}", v)
            for p, v in (
                ("scale", scale), ("bias", rng.normal(0, 1, cout)),
                ("mean", rng.normal(0, 1, cout)), ("var", rng.uniform(0.5, 2, cout)),
            )
        ]  # fmt: skip
        nodes.append(
            helper.make_node("BatchNormalization", [out, *params], [f"bn{i}"], name=f"bn{i}")
        )
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"))
        x = f"relu{i}"
    graph = helper.make_graph(
        nodes, "large_activations",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTHS[0], 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTHS[-1], 16, 16])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def importances(seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed + 1)
    return {name: rng.uniform(0, 1, WIDTHS[i + 1]).tolist() for i, name in enumerate(SCORED)}


def write(folder: Path, seed: int = 0) -> Path:
    path = folder / "large_activations.onnx"
    onnx.save(build(seed), str(path))
    return path
