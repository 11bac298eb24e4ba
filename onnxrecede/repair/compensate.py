"""Bias compensation: a removed channel's expected value is folded into its consumers' biases.

A removed channel rarely outputs zero: after a folded BatchNorm and a ReLU it carries a nearly
constant map. For every linear consumer (:mod:`onnxrecede.consumers`) of removed input channels
``R`` the bias becomes ``b'[o] = b[o] + sum_{c in R} sum_k W[o, c, k] * E[a_c]``:

1. ``E[a_c]`` is the mean of the consumer's input channel over calibration data, run through the
   *original* model (mean over samples and positions);
2. without data, only channels that are constant by construction are compensated: the producer's
   weights for that channel are all zero (a bias-only channel), followed by channel-wise ops
   (activations, BatchNormalization, pooling, Flatten) that keep a constant constant;
3. exact for Gemm/MatMul and 1x1 convs; for a kxk conv with zero padding it is exact in the
   interior and over-counts at the border, where part of the kernel reads padding (the border
   error is ``W[o, c, k] * E[a_c]`` for each tap that falls outside the image).

The same deltas applied to the masked reference give the compensated reference, which the pruned
model must equal exactly: the verification proof still holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.data.sources import Samples
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.engine.registry import Rule, rule_for
from onnxrecede.progress import Progress
from onnxrecede.repair.consumers import (
    LinearConsumer,
    read_bias,
    read_weight,
    tap_sums,
    weight_kernel,
    write_bias,
)
from onnxrecede.runtime.probe import Probe

logger = logging.getLogger(__name__)


@dataclass
class Compensation:
    """Bias changes per consumer (original output numbering) and what they were based on."""

    deltas: dict[ir.Node, np.ndarray] = field(default_factory=dict)
    consumers: dict[ir.Node, LinearConsumer] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def apply(self, graph: ir.Graph, node_map: dict[ir.Node, ir.Node] | None = None) -> None:
        """Add the deltas to the biases in ``graph``.

        With ``node_map`` (original node -> node of a full-size copy) the deltas go in whole, as
        for the masked reference; without it they are sliced to the consumers' kept outputs, as
        for the pruned model.
        """
        const = ConstantEvaluator()
        for node, delta in self.deltas.items():
            target = node if node_map is None else node_map[node]
            keep = self.consumers[node].out_keep
            d = delta if node_map is not None or keep is None else delta[keep]
            w = target.inputs[1]
            dtype = np.dtype(w.dtype.numpy()) if w is not None and w.dtype else np.dtype("float32")
            write_bias(graph, target, read_bias(target, len(d), const) + d, dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"consumers": self.entries, "skipped": self.skipped}


def tap_means(
    model: ir.Model,
    consumers: list[LinearConsumer],
    samples: Samples,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> dict[ir.Node, np.ndarray]:
    """Per consumer, the mean of what each kernel tap reads from each input channel over
    ``samples`` (``[C, K]``, zero padding included: case 3 of the module doc)."""
    const = ConstantEvaluator()
    kernels = {c.node: weight_kernel(c.node, const) for c in consumers}
    sums: dict[ir.Node, np.ndarray] = {}
    counts: dict[ir.Node, int] = dict.fromkeys(kernels, 0)
    probe = Probe(
        model, sorted({c.data.name for c in consumers if c.data.name}), include_outputs=False
    )
    for _, arrays in probe.over(samples, batch_size, progress, stage="calibration"):
        for c in consumers:
            total, n = tap_sums(
                np.asarray(arrays[c.data.name or ""]), c.axis, c.node, kernels[c.node]
            )
            sums[c.node] = sums.get(c.node, 0.0) + total
            counts[c.node] += n
    return {node: sums[node] / max(counts[node], 1) for node in sums}


def _constant_taps(
    c: LinearConsumer, values: np.ndarray, dims: tuple[int | None, ...] | None
) -> np.ndarray:
    """``[C, K]`` tap means of channels that hold ``values`` everywhere inside the image."""
    kernel = weight_kernel(c.node, ConstantEvaluator())
    if not kernel:
        return values[:, None]
    if dims is None or any(d is None for d in dims[2:]):
        return np.full((len(values), int(np.prod(kernel))), np.nan)
    ones = np.ones((1, 1, *(int(d) for d in dims[2:] if d is not None)))
    inside, n = tap_sums(ones, 1, c.node, kernel)
    return values[:, None] * (inside / n)


def graph_constants(analysis: Analysis, consumer: LinearConsumer) -> np.ndarray:
    """Per position of the consumer's input channels: its value where it is constant by
    construction (case 2 of the module doc), NaN elsewhere."""
    ctx = analysis
    chain: list[ir.Node] = []
    value: ir.Value | None = consumer.data
    size = len(consumer.kept) + len(consumer.removed)
    nan = np.full(size, np.nan)
    while value is not None:
        node = value.producer()
        if node is None:
            return nan
        if node in ctx.channel_outputs:
            break
        if _maps_constants(node):
            chain.append(node)
            value = node.inputs[0]
            continue
        return nan
    assert node is not None
    out_view = ctx.channel_outputs[node]
    if out_view.labels is None or ctx.view(value) is None:
        return nan
    per_label = dict(zip(out_view.labels.tolist(), _producer_constants(node, ctx.constants)))
    for op in reversed(chain):  # each op's rule maps the constants (constant_through)
        view = ctx.view(op.inputs[0])
        rule = rule_for(op)
        if view is None or rule is None:
            return nan
        labels = view.labels.tolist()
        values = np.asarray([per_label.get(lab, np.nan) for lab in labels], dtype=np.float64)
        mapped = rule.constant_through(op, values, ctx.constants)
        if mapped is None:
            return nan
        per_label = dict(zip(labels, np.asarray(mapped, dtype=np.float64).tolist()))
    data_view = ctx.view(consumer.data)
    if data_view is None:
        return nan
    return np.asarray([per_label.get(int(lab), np.nan) for lab in data_view.labels])


def _maps_constants(node: ir.Node) -> bool:
    rule = rule_for(node)
    return rule is not None and type(rule).constant_through is not Rule.constant_through


def _producer_constants(node: ir.Node, const: ConstantEvaluator) -> np.ndarray:
    """A producer's output channels: the bias where the channel's weights are all zero."""
    if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.inputs) < 2:
        return np.array([])
    w = const.value(node.inputs[1])
    if w is None:
        return np.array([])
    if node.op_type == "Conv" or (
        node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1
    ):
        rows = w.reshape(w.shape[0], -1)
    elif w.ndim == 2:
        rows = w.T
    else:
        return np.array([])
    cout = rows.shape[0]
    bias = read_bias(node, cout, const)
    return np.where(np.all(rows == 0, axis=1), bias, np.nan)


def plan_compensation(
    analysis: Analysis,
    consumers: list[LinearConsumer],
    means: dict[ir.Node, np.ndarray] | None,
) -> Compensation:
    """The bias deltas: from calibration ``means`` when given, else from graph constants."""
    comp = Compensation()
    const = analysis.constants
    for c in consumers:
        if means is not None and c.node in means:
            taps, source = means[c.node], "calibration"
        else:
            values = graph_constants(analysis, c)
            taps, source = _constant_taps(c, values, analysis.dims(c.data)), "graph constant"
        removed = c.removed[~np.isnan(taps[c.removed]).any(axis=1)]
        if not len(removed):
            comp.skipped.append(f"{c.node.op_type} '{c.name}': no removed input is constant")
            continue
        w = read_weight(c.node, const)
        delta = np.einsum("ock,ck->o", w[:, removed, :], taps[removed])
        comp.deltas[c.node] = delta
        comp.consumers[c.node] = c
        comp.entries.append(
            {
                "node": c.name,
                "op_type": c.node.op_type,
                "removed_inputs": len(c.removed),
                "compensated": len(removed),
                "source": source,
                "max_abs_bias_change": float(np.abs(delta).max()) if delta.size else 0.0,
            }
        )
    return comp
