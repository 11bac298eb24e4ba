"""Handmade graphs and assertions shared by the per-rule tests.

A positive case puts the op under test between two convs::

    input [1,3,8,8] -> Conv "conv_a" (3->8) -> [op under test] -> Conv "conv_b" -> Relu
          -> GlobalAveragePool -> Flatten -> Gemm "fc" -> output

scores only ``conv_a`` (:data:`IMP`: channels 1, 3, 5, 7 are the least important) and asserts
that those channels are removed *through* the op (``conv_a`` loses them and ``conv_b``'s weight
loses the matching input channels) and that the pruned model equals the masked oracle.
A negative case asserts the barrier: op type, node name and reason, and that ``conv_a`` keeps
every channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper

import onnxrecede
from tests.engine.oracle import assert_equals_masked_oracle
from tests.models.handmade import GraphBuilder

#: importances of conv_a's 8 channels: at ratio 0.5 channels 1, 3, 5, 7 go.
IMP = {"conv_a": [0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4]}
REMOVED = [1, 3, 5, 7]
KEPT = [0, 2, 4, 6]
OPSET = 21

Middle = Callable[[GraphBuilder, str], tuple[str, int]]


#: a tf2onnx-style dynamic batch: ``sandwich(..., batch=SYMBOLIC_BATCH)``
SYMBOLIC_BATCH = "N"


def sandwich(
    middle: Middle, opset: int = OPSET, relu: bool = False, batch: int | str = 1
) -> onnx.ModelProto:
    """conv_a (3->8) -> ``middle`` -> conv_b -> head; ``middle`` returns (tensor, channels).
    ``batch``: the input's batch dim, a number or a symbol."""
    g = GraphBuilder()
    x = g.conv("input", "conv_a", 3, 8)
    if relu:
        x = g.op("Relu", [x])
    y, channels = middle(g, x)
    y = g.op("Relu", [g.conv(y, "conv_b", channels, 6)])
    return g.model(g.head(y, 6), (batch, 10), opset, input_shape=(batch, 3, 8, 8))


def const(g: GraphBuilder, name: str, array: np.ndarray) -> str:
    return g.init(name, np.asarray(array))


def per_channel(g: GraphBuilder, name: str, low: float = 0.5, high: float = 1.5) -> str:
    """A [1, 8, 1, 1] float constant: one value per channel of conv_a."""
    return g.rand(name, (1, 8, 1, 1), low, high)


def cast(g: GraphBuilder, x: str, to: int, name: str | None = None) -> str:
    return g.op("Cast", [x], name=name, to=to)


def weight_shape(model: ir.Model, node_name: str, index: int = 1) -> tuple[int, ...]:
    node = next(n for n in model.graph if n.name == node_name)
    value = node.inputs[index]
    assert value is not None and value.const_value is not None
    return tuple(int(d) for d in value.const_value.shape)


def prune_through(
    model: onnx.ModelProto,
    removed: Sequence[int] = REMOVED,
    consumer: str | None = "conv_b",
    consumer_channels: int | None = None,
    numeric: bool = True,
    importances: dict[str, list[float]] | None = None,
    producer: str = "conv_a",
    consumer_axis: int = 1,
    **policy: Any,
) -> tuple[ir.Model, Any]:
    """Prune ``model`` (scoring conv_a) and assert the channels went through the op under test.

    ``consumer`` is the conv whose input channels must shrink to ``consumer_channels`` (default:
    its original count minus ``len(removed)``). ``numeric``: verify and compare with the masked
    oracle in ONNX Runtime (False only for ops ONNX Runtime cannot run).
    """
    imp = importances or IMP
    policy.setdefault("ratio", 0.5)
    pruned, report = onnxrecede.prune(model, imp, verify=numeric, **policy)
    assert report.removed_channels.get(producer) == list(removed), report.removed_channels
    if consumer is not None:
        before = weight_shape(onnxrecede.load_model(model), consumer)[consumer_axis]
        after = weight_shape(pruned, consumer)[consumer_axis]
        want = consumer_channels if consumer_channels is not None else before - len(removed)
        assert after == want, f"{consumer} reads {after} channels, expected {want}"
    if numeric:
        assert report.verification["masked_reference"] == "passed"
        assert_equals_masked_oracle(model, pruned, imp, **policy)
    else:
        from onnxrecede.engine.verify import check_consistency

        assert check_consistency(pruned) == []
        onnx.checker.check_model(ir.serde.serialize_model(pruned), full_check=True)
    return pruned, report


def assert_barrier(
    model: onnx.ModelProto,
    op_type: str,
    node: str,
    pattern: str,
    producer: str = "conv_a",
    importances: dict[str, list[float]] | None = None,
) -> None:
    """``node`` blocks ``producer``'s group with a reason matching ``pattern``; nothing is cut."""
    info = onnxrecede.inspect(model)
    found = [b for b in info.barriers if b["op_type"] == op_type and b["node"] == node]
    assert found, f"no barrier at {op_type} '{node}': {info.barriers}"
    assert any(re.search(pattern, b["reason"]) for b in found), found
    group = next(g for g in info.groups if producer in g.producers)
    assert group.status == "blocked"
    assert any(b["node"] == node for b in group.barriers), group.barriers
    _, report = onnxrecede.prune(model, importances or IMP, ratio=0.5, verify=False)
    assert producer not in report.removed_channels


def float_input_model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, Sequence[int]]],
    outputs: list[tuple[str, Sequence[int]]],
    inits: list[onnx.TensorProto],
    opset: int = OPSET,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def assert_oracle_at_batch(
    model: onnx.ModelProto, pruned: ir.Model, batch: int, **policy: Any
) -> None:
    """``pruned`` equals the masked reference on a batch of ``batch`` (symbolic-batch models)."""
    from tests.engine.oracle import assert_close, masked_oracle, run

    policy.setdefault("ratio", 0.5)
    rng = np.random.default_rng(11)
    feeds = {"input": rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)}
    expected, _ = run(masked_oracle(model, IMP, **policy), feeds)
    actual, _ = run(pruned, feeds)
    assert_close(expected, actual)
