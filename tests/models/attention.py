"""Handmade attention blocks (onnx.helper, IR 10, opset 21) in the layouts the exporters write.

``attention_model(spec)`` builds ``x [B, N, C] -> q, k, v -> softmax(q k^T * scale + mask) v ->
merge heads -> output projection -> [B, N, C]``; :class:`AttentionSpec` picks the layout:

| layout | q, k, v come from |
|---|---|
| `split` | one fused projection, Reshape [B, N, 3, H, D], Transpose, Split on the parts axis, Squeeze (TorchScript, timm) |
| `gather` | the same, Gather of one index per part |
| `slice` | the same, Slice of one index, Squeeze (dynamo, timm) |
| `separate` | three projections, each Reshape [B, N, H, D], Transpose (HF) |
| `mha` | nn.MultiheadAttention as the dynamo exporter writes it: Reshape [N, B, 3, C], Unsqueeze, Transpose, Squeeze, Gather; each part Reshape [N, B*H, D] (heads merged with the batch) |

Node names: the projections are ``qkv`` (fused) or ``q``, ``k``, ``v``; the output projection
``proj``. ``scale="shape"`` computes ``1/sqrt(D)`` at run time from ``Shape(q)`` like the
TorchScript exporter; ``mask`` adds a constant to the scores, broadcast ``[1, 1, N, N]`` or
``full`` ``[B, H, N, N]``. ``dynamic_batch`` (not with ``mha``) makes the batch dim
symbolic, the Reshape targets ``Concat(Shape(input)[:1], constants)`` (the merge's channel
entry read off the input, ``Shape(input)[2:3]``, as TorchScript writes ``reshape(b, n, c)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.models.builder import IR_VERSION, GraphBuilder

LAYOUTS = ("split", "gather", "slice", "separate", "mha")
OPSET = 21


@dataclass(frozen=True)
class AttentionSpec:
    heads: int = 4
    head_dim: int = 4
    tokens: int = 5
    batch: int = 2
    layout: str = "split"
    mask: str | None = None  # None, "broadcast", "full"
    scale: str = "const"  # "const" or "shape"
    seed: int = 0
    #: the batch dim is symbolic: target shapes are Concat(Shape(input)[:1], constants)
    dynamic_batch: bool = False

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    def projections(self) -> dict[str, int]:
        """Importances keys (projection node names) and their output channels."""
        c = self.width
        if self.layout == "separate":
            return {"q": c, "k": c, "v": c}
        return {"qkv": 3 * c}


def _linear(g: GraphBuilder, x: str, name: str, cin: int, cout: int) -> str:
    y = g.op("MatMul", [x, g.rand(f"{name}.weight", (cin, cout))], name=name)
    return g.op("Add", [y, g.rand(f"{name}.bias", (cout,))], name=f"{name}_bias")


def _parts(g: GraphBuilder, s: AttentionSpec, x: str) -> list[str]:
    """q, k, v as [B, H, N, D] (``mha``: [B*H, N, D])."""
    n, h, d, c = s.tokens, s.heads, s.head_dim, s.width
    if s.layout == "separate":
        out = []
        for name in ("q", "k", "v"):
            y = g.op("Reshape", [_linear(g, x, name, c, c), _target(g, s, f"{name}_shape", [n, h, d])],
                     name=f"{name}_split")  # fmt: skip
            out.append(g.op("Transpose", [y], name=f"{name}_heads", perm=[0, 2, 1, 3]))
        return out
    qkv = _linear(g, x, "qkv", c, 3 * c)
    if s.layout == "mha":
        return _mha_parts(g, s, qkv)
    y = g.op("Reshape", [qkv, _target(g, s, "qkv_shape", [n, 3, h, d])], name="qkv_split")
    y = g.op("Transpose", [y], name="qkv_perm", perm=[2, 0, 3, 1, 4])
    zero = g.ints("axis0", [0])
    if s.layout == "split":
        pieces = g.multi("Split", [y, g.ints("ones", [1, 1, 1])], 3, name="unbind", axis=0)
        return [g.op("Squeeze", [p, zero], name=f"squeeze{i}") for i, p in enumerate(pieces)]
    if s.layout == "gather":
        return [g.op("Gather", [y, g.init(f"idx{i}", np.asarray(i, np.int64))], name=f"pick{i}",
                     axis=0) for i in range(3)]  # fmt: skip
    out = []
    for i in range(3):
        p = g.op("Slice", [y, g.ints(f"start{i}", [i]), g.ints(f"stop{i}", [i + 1]), zero],
                 name=f"slice{i}")  # fmt: skip
        out.append(g.op("Squeeze", [p, zero], name=f"squeeze{i}"))
    return out


def _mha_parts(g: GraphBuilder, s: AttentionSpec, qkv: str) -> list[str]:
    """qkv is [N, B, 3C] here (sequence first)."""
    b, n, h, d, c = s.batch, s.tokens, s.heads, s.head_dim, s.width
    y = g.op("Reshape", [qkv, g.ints("qkv_shape", [n, b, 3, c])], name="qkv_split")
    y = g.op("Unsqueeze", [y, g.ints("axis0", [0])], name="qkv_unsqueeze")
    y = g.op("Transpose", [y], name="qkv_perm", perm=[3, 1, 2, 0, 4])
    y = g.op("Squeeze", [y, g.ints("axis3", [3])], name="qkv_squeeze")
    out = []
    for i in range(3):
        p = g.op("Gather", [y, g.init(f"idx{i}", np.asarray(i, np.int64))], name=f"pick{i}", axis=0)
        p = g.op("Reshape", [p, g.ints(f"heads_shape{i}", [n, b * h, d])], name=f"heads{i}")
        out.append(g.op("Transpose", [p], name=f"heads_first{i}", perm=[1, 0, 2]))
    return out


def _scale(g: GraphBuilder, s: AttentionSpec, q: str) -> str:
    if s.scale == "const":
        return g.init("scale", np.asarray([s.head_dim**-0.5], np.float32))
    dim = g.op("Shape", [q], name="q_shape", start=-1)
    dim = g.op("Cast", [dim], name="q_dim", to=TensorProto.FLOAT)
    return g.op("Reciprocal", [g.op("Sqrt", [dim], name="q_sqrt")], name="scale_of_shape")


def _attend(g: GraphBuilder, s: AttentionSpec, q: str, k: str, v: str) -> str:
    rank = 3 if s.layout == "mha" else 4
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    kt = g.op("Transpose", [k], name="k_t", perm=perm)
    scores = g.op("MatMul", [g.op("Mul", [q, _scale(g, s, q)], name="q_scaled"), kt], name="scores")
    if s.mask is not None:
        b, h, n = s.batch, s.heads, s.tokens
        shape = (1, 1, n, n) if s.mask == "broadcast" else (b, h, n, n)
        if s.layout == "mha":
            shape = (1, n, n) if s.mask == "broadcast" else (b * h, n, n)
        scores = g.op("Add", [scores, g.rand("mask", shape, -2.0, 0.0)], name="masked")
    attn = g.op("Softmax", [scores], name="softmax", axis=-1)
    return g.op("MatMul", [attn, v], name="context")


def _target(g: GraphBuilder, s: AttentionSpec, name: str, rest: list[int]) -> str:
    """A Reshape target ``[batch, *rest]``: constant, or built at run time (dynamic batch)."""
    if not s.dynamic_batch:
        return g.ints(name, [s.batch, *rest])
    batch = g.op("Shape", ["input"], name=f"{name}_batch", start=0, end=1)
    return g.op("Concat", [batch, g.ints(name, rest)], name=f"{name}_cat", axis=0)


def attention_model(s: AttentionSpec) -> onnx.ModelProto:
    g = GraphBuilder(seed=s.seed)
    b, n, c = s.batch, s.tokens, s.width
    batch: int | str = "batch" if s.dynamic_batch else b
    x = "input"
    if s.layout == "mha":
        x = g.op("Transpose", [x], name="seq_first", perm=[1, 0, 2])
    q, k, v = _parts(g, s, x)
    ctx = _attend(g, s, q, k, v)
    if s.layout == "mha":
        ctx = g.op("Transpose", [ctx], name="merge_perm", perm=[1, 0, 2])  # [N, B*H, D]
        ctx = g.op("Reshape", [ctx, g.ints("merge_shape", [n * b, c])], name="merge")
        y = g.op("Gemm", [ctx, g.rand("proj.weight", (c, c)), g.rand("proj.bias", (c,))],
                 name="proj", transB=1)  # fmt: skip
        y = g.op("Reshape", [y, g.ints("out_shape", [n, b, c])], name="unmerge")
        y = g.op("Transpose", [y], name="batch_first", perm=[1, 0, 2])
    else:
        ctx = g.op("Transpose", [ctx], name="merge_perm", perm=[0, 2, 1, 3])
        target = _target(g, s, "merge_shape", [n, c])
        if s.dynamic_batch:  # TorchScript's x.reshape(b, n, c): b and c read off the input
            batch = g.op("Shape", ["input"], name="merge_b", start=0, end=1)
            width = g.op("Shape", ["input"], name="merge_c", start=2, end=3)
            target = g.op(
                "Concat", [batch, g.ints("merge_n", [n]), width], name="merge_cat", axis=0
            )
        ctx = g.op("Reshape", [ctx, target], name="merge")
        y = _linear(g, ctx, "proj", c, c)
    g.nodes.append(helper.make_node("Identity", [y], ["output"], name="output_id"))
    graph = helper.make_graph(
        g.nodes,
        "attention",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, n, c])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, n, c])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION)


def head_importances(s: AttentionSpec, head_scores: list[float]) -> dict[str, list[float]]:
    """Importances giving every channel of head h the score ``head_scores[h]`` (all parts)."""
    per_head = np.repeat(np.asarray(head_scores, np.float64), s.head_dim)
    return {key: np.tile(per_head, n // s.width).tolist() for key, n in s.projections().items()}


def dim_importances(s: AttentionSpec, dim_scores: list[float]) -> dict[str, list[float]]:
    """Importances giving dim d of every head the score ``dim_scores[d]``."""
    per_dim = np.tile(np.asarray(dim_scores, np.float64), s.heads)
    return {key: np.tile(per_dim, n // s.width).tolist() for key, n in s.projections().items()}
