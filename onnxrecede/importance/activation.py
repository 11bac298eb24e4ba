"""The ``activation`` criterion: mean |output| of each channel over calibration data.

Cases:
1. The tensor measured for a producer is its output after what directly follows it alone: a
   constant bias Add (a MatMul's bias), a BatchNormalization, then one activation (Relu, Clip,
   LeakyRelu, Sigmoid, HardSwish, ...). A channel that the activation zeroes scores 0.
2. The channel axis is 1 for Conv/ConvTranspose/Gemm outputs and the last axis for MatMul.
3. The tensors are exposed as extra outputs of a private copy of the model and read batch by
   batch with ONNX Runtime (:mod:`onnxrecede.probe`): memory holds one batch, and the sums are
   accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxrecede.errors import InputError
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


def _channel_means(array: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    a = np.abs(np.asarray(array, dtype=np.float64))
    moved = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    return moved.sum(axis=1), moved.shape[1]


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
    from onnxrecede.data.sources import input_specs, open_samples
    from onnxrecede.runtime.probe import Probe

    whole_number("batch_size", batch_size)

    tensors: dict[str, tuple[str, int]] = {}  # key -> (tensor name, channel axis)
    for p in producers:
        value = measured_tensor(p.node)
        if not value.name:
            continue
        axis = -1 if p.node.op_type == "MatMul" else 1
        tensors[p.key] = (value.name, axis)
    samples = (
        calibration
        if hasattr(calibration, "batches")
        else open_samples(calibration, input_specs(model), image=image, limit=limit)
    )
    if len(samples) == 0:
        raise InputError(f"calibration data {calibration} holds no samples")
    probe = Probe(model, sorted({name for name, _ in tensors.values()}), include_outputs=True)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for _, arrays in probe.over(samples, batch_size, progress, stage="calibration"):
        for key, (name, axis) in tensors.items():
            total, n = _channel_means(arrays[name], axis)
            sums[key] = sums[key] + total if key in sums else total
            counts[key] = counts.get(key, 0) + n
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
    return out
