"""Small hand-built ONNX models for the data, probe and cut-quality tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10


def small_cnn(
    seed: int = 0,
    batch: int | str = "N",
    hw: int = 8,
    kb: int = 3,
    bn: bool = False,
    zero_channel: int | None = None,
    duplicate: tuple[int, int] | None = None,
) -> onnx.ModelProto:
    """input [N,3,hw,hw] -> Conv conv_a (3->8) [-> BatchNormalization bn_a] -> Relu
    -> Conv conv_b (8->6, kb x kb, same padding) -> Relu -> GlobalAveragePool -> Flatten
    -> Gemm fc (->10) -> logits.

    ``zero_channel``: that output channel of conv_a has all-zero weights (a bias-only channel).
    ``duplicate=(src, dst)``: conv_a's channel ``dst`` is a copy of channel ``src``.
    """
    rng = np.random.default_rng(seed)

    def rand(shape: tuple[int, ...], scale: float = 0.5) -> np.ndarray:
        return rng.normal(0, scale, shape).astype(np.float32)

    wa, ba = rand((8, 3, 3, 3)), rand((8,))
    if zero_channel is not None:
        wa[zero_channel] = 0
        ba[zero_channel] = 0.7
    if duplicate is not None:
        wa[duplicate[1]], ba[duplicate[1]] = wa[duplicate[0]], ba[duplicate[0]]
    arrays = {
        "conv_a.weight": wa,
        "conv_a.bias": ba,
        "conv_b.weight": rand((6, 8, kb, kb)),
        "conv_b.bias": rand((6,)),
        "fc.weight": rand((10, 6)),
        "fc.bias": rand((10,)),
    }
    a = "a"
    nodes = [
        helper.make_node("Conv", ["input", "conv_a.weight", "conv_a.bias"], ["a"], name="conv_a",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]  # fmt: skip
    if bn:
        arrays.update(
            {
                "bn_a.scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
                "bn_a.bias": rand((8,)),
                "bn_a.mean": rand((8,)),
                "bn_a.var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
            }
        )
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                ["a", "bn_a.scale", "bn_a.bias", "bn_a.mean", "bn_a.var"],
                ["a_bn"],
                name="bn_a",
            )  # fmt: skip
        )
        a = "a_bn"
    p = kb // 2
    nodes += [
        helper.make_node("Relu", [a], ["a_relu"], name="relu_a"),
        helper.make_node("Conv", ["a_relu", "conv_b.weight", "conv_b.bias"], ["b"], name="conv_b",
                         kernel_shape=[kb, kb], pads=[p] * 4),
        helper.make_node("Relu", ["b"], ["b_relu"], name="relu_b"),
        helper.make_node("GlobalAveragePool", ["b_relu"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc",
                         transB=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )


def importances_removing(
    conv_a: list[int], conv_b: list[int] | None = None
) -> dict[str, list[float]]:
    """Importances that rank the given channels of conv_a (and conv_b) lowest."""
    a = [0.0 if i in conv_a else 1.0 + i for i in range(8)]
    b = [0.0 if conv_b and i in conv_b else 1.0 + i for i in range(6)]
    return {"conv_a": a, "conv_b": b}
