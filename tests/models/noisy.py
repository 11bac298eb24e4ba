"""Models for honest verification (issue 17): one whose masked reference moves between ONNX
Runtime optimisation levels by more than the fixed tolerance, one whose output is ~0 on N(0, 1)
inputs.

``noisy_softmax``: conv_a (8 -> 64, 3x3; channel 0 carries a constant 1e4) -> BatchNormalization
-> Relu -> conv_b (64 -> 10, 3x3) -> Softmax over the channels. Every logit sums a 1e4 term
with 575 small ones, so its float32 rounding (ulp(1e4) ~ 1e-3) depends on the order of the sum:
the pruned model (half the channels, another blocking of the sum) and the masked reference
differ by ~1e-3 in probability, and so does the reference between optimisation levels (``all``
sums convolutions in a blocked layout) on this machine's kernels; other CPUs sum in other orders,
so tests must not rely on these sizes. With ``big=0`` the differences are ~1e-6 (a clean model
for injected, known differences).

``near_zero``: conv_a (3 -> 8, 3x3, positive weights) -> Relu -> conv_b (8 -> 4, 1x1) -> Sigmoid
(a -16 bias) -> global average pool: 4 class scores. On N(0, 1) inputs the largest output is
~1e-6, so atol alone covers it; on inputs around 1 (``real_inputs``) the logits reach about -2
and the output is not near zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: the seed of noisy_softmax whose pruned-vs-reference difference was 100x the fixed tolerance
#: on the AMD machine it was chosen on (other kernels differ: tests do not rely on it)
NOISY_SEED = 2


def _model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x: list[Any], y: list[Any], name: str
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, y)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


class _Inits(list):  # type: ignore[type-arg]
    def __call__(self, name: str, array: Any) -> str:
        self.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name


def noisy_softmax(
    seed: int = NOISY_SEED, mid: int = 64, big: float = 1e4
) -> tuple[onnx.ModelProto, dict]:
    """The model and L1-like importances that keep channel 0 (see the module docstring); with
    ``big=0`` every logit is a sum of small terms and the model is not noisy."""
    rng = np.random.default_rng(seed)
    init = _Inits()
    wa = rng.standard_normal((mid, 8, 3, 3))
    wa[0] = 0
    ba = np.zeros(mid)
    ba[0] = big
    wb = rng.standard_normal((10, mid, 3, 3)) * 0.1
    wb[:, 0] = 0
    wb[:, 0, 1, 1] = 1.0
    bn = [init(f"bn.{p}", v) for p, v in (
        ("scale", rng.uniform(0.5, 1.5, mid)), ("bias", rng.normal(0, 0.1, mid)),
        ("mean", rng.normal(0, 0.1, mid)), ("var", rng.uniform(0.5, 2, mid)))]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", init("conv_a.weight", wa), init("conv_a.bias", ba)], ["a"],
                         name="conv_a", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["a", *bn], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", init("conv_b.weight", wb), init("conv_b.bias", np.zeros(10))],
                         ["logits"], name="conv_b", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Softmax", ["logits"], ["p"], name="softmax", axis=1),
    ]  # fmt: skip
    model = _model(nodes, init, [1, 8, 16, 16], [1, 10, 16, 16], "noisy_softmax")
    importances = {"conv_a": [1e9, *rng.uniform(0, 1, mid - 1).tolist()]}
    return model, importances


def near_zero(seed: int = 0) -> tuple[onnx.ModelProto, dict]:
    """The model (dynamic batch) and importances for conv_a (see the module docstring)."""
    rng = np.random.default_rng(seed)
    init = _Inits()
    nodes = [
        helper.make_node("Conv", ["x", init("conv_a.weight", rng.uniform(0, 0.5, (8, 3, 3, 3))),
                                  init("conv_a.bias", np.zeros(8))], ["a"], name="conv_a",
                         kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", init("conv_b.weight", rng.uniform(0, 0.5, (4, 8, 1, 1))),
                                  init("conv_b.bias", np.full(4, -16.0))], ["logits"],
                         name="conv_b", kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["logits"], ["s"], name="sigmoid"),
        helper.make_node("GlobalAveragePool", ["s"], ["g"], name="pool"),
        helper.make_node("Flatten", ["g"], ["p"], name="flatten"),
    ]  # fmt: skip
    model = _model(nodes, init, ["N", 3, 8, 8], ["N", 4], "near_zero")
    return model, {"conv_a": rng.uniform(0, 1, 8).tolist()}


def real_inputs(count: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Labelled inputs of ``near_zero`` around 1, where its output is far from zero (``x``,
    ``y``: the arrays of a ``.npz`` data file)."""
    rng = np.random.default_rng(seed)
    x = (1.0 + 0.3 * rng.standard_normal((count, 3, 8, 8))).astype(np.float32)
    return {"x": x, "y": rng.integers(0, 4, count)}
