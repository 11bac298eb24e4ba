"""The ``activation`` criterion: mean |output| of each channel over calibration data.

Cases:
1. The tensor measured for a producer is its output after what directly follows it alone: a
   constant bias Add (a MatMul's bias), a BatchNormalization, then one activation (Relu, Clip,
   LeakyRelu, Sigmoid, HardSwish, ...). A channel that the activation zeroes scores 0.
2. The channel axis is 1 for Conv/ConvTranspose/Gemm outputs and the last axis for MatMul.
3. Attention heads (``onnxrecede.engine.rules.heads``): every q/k/v channel of a head scores
   the head's share of the attention output: the mean |input| of the output projection over
   the head's channels, divided by the sum over the block's heads
   (:mod:`onnxrecede.importance.head_shares`).
4. The tensors are exposed as extra outputs of a private copy of the model and read batch by
   batch with ONNX Runtime (:mod:`onnxrecede.probe`): memory holds one batch, and the sums are
   accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxrecede.errors import InputError
from onnxrecede.importance.means import mean_abs
from onnxrecede.progress import Progress

if TYPE_CHECKING:
    from onnxrecede.importance.criteria import ChannelProducer


ACTIVATIONS = frozenset(
    {
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
        "Selu", "Celu", "Softplus", "Gelu", "Mish", "PRelu", "ThresholdedRelu",
    }
)  # fmt: skip


def _single_consumer(value: ir.Value) -> ir.Node | None:
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    node, index = uses[0]
    if node.domain not in ("", "ai.onnx") or index != 0 or not node.outputs:
        return None
    return node


def _constant_operand(add: ir.Node) -> bool:
    other = add.inputs[1] if len(add.inputs) == 2 else None
    if other is None:
        return False
    producer = other.producer()
    return other.is_initializer() or (producer is not None and producer.op_type == "Constant")


def measured_tensor(node: ir.Node) -> ir.Value:
    """The producer's output after a following bias Add, BatchNormalization and activation."""
    value = node.outputs[0]
    stages = (("Add",), ("BatchNormalization",), tuple(ACTIVATIONS))
    for ops in stages:
        consumer = _single_consumer(value)
        if consumer is None or consumer.op_type not in ops:
            continue
        if consumer.op_type == "Add" and not _constant_operand(consumer):
            continue
        value = consumer.outputs[0]
    return value


def activation_scores(
    model: ir.Model,
    producers: Sequence[ChannelProducer],
    calibration: Any,
    *,
    batch_size: int = 32,
    limit: int | None = None,
    image: Any = None,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Mean |activation| per channel of every producer, over the calibration samples."""
    from onnxrecede.checks import whole_number

    whole_number("batch_size", batch_size)
    tensors: dict[str, tuple[str, int]] = {}  # key -> (tensor name, channel axis)
    for p in producers:
        value = measured_tensor(p.node)
        if not value.name:
            continue
        axis = -1 if p.node.op_type == "MatMul" else 1
        tensors[p.key] = (value.name, axis)
    sums, counts = mean_abs(model, tensors, calibration, batch_size, limit, image, progress)
    out = {}
    for p in producers:
        if p.key not in sums:
            continue
        if len(sums[p.key]) != p.channels:
            name, axis = tensors[p.key]
            raise InputError(
                f"{p.node.op_type} '{p.node.name}': tensor '{name}' has {len(sums[p.key])} "
                f"channels on axis {axis}, expected {p.channels}"
            )
        out[p.key] = sums[p.key] / max(counts[p.key], 1)
    from onnxrecede.importance.head_shares import head_shares

    out.update(head_shares(model, producers, calibration, batch_size, limit, image, progress, out))
    return out
