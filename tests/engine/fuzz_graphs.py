"""Random CNN graphs for property-based tests, described by plain JSON-able specs.

A spec is ``{"seed", "stem", "blocks", "head", "policy", "imp_seed"}``; :func:`build` turns it
into an ONNX model deterministically, so a failing spec can be saved as a regression test
(``tests/engine/fuzz_regressions/*.json``). :func:`specs` is the hypothesis strategy.

Blocks (``kind``), each applied to the running tensor ``x`` [1, C, H, H]:

1. ``conv``: Conv (kernel 1 or 3, with or without bias), optional separate BatchNormalization,
   optional activation;
2. ``residual``: x + BN(Conv(x)) (an Add couples both);
3. ``concat``: cat([x, Conv(x)], 1);
4. ``split``: Split on channels, a Conv per part, Concat;
5. ``slice``: Slice a channel range;
6. ``gather``: Gather channels with constant indices;
7. ``depthwise``: Conv group=C, multiplier 1 or 2;
8. ``grouped``: Conv group=2;
9. ``se``: squeeze-excitation gate (GAP, 1x1 convs, Sigmoid, Mul);
10. ``pad``: constant Pad on the channel axis (option-A shortcut), or spatial;
11. ``resize``: Resize x2 (nearest) then MaxPool 2;
12. ``mlp``: channels-last MatMul block (Transpose, MatMul, Relu, MatMul, Transpose), optional
    residual;
13. ``affine``: Mul and Add by per-channel constants.

Heads: ``gap`` (GlobalAveragePool -> Flatten -> Gemm) or ``flatten`` (Flatten -> Gemm).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from hypothesis import strategies as st

from tests.models.handmade import GraphBuilder

Spec = dict[str, Any]
ACTIVATIONS = ("Relu", "Sigmoid", "LeakyRelu", "none")
KINDS = (
    "conv", "residual", "concat", "split", "slice", "gather", "depthwise", "grouped", "se",
    "pad", "resize", "mlp", "affine",
)  # fmt: skip
MAX_CHANNELS = 12


class _Builder:
    def __init__(self, seed: int) -> None:
        self.g = GraphBuilder(seed)
        self.n = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def ints(self, values: list[int]) -> str:
        return self.g.ints(self.name("i"), values)

    def conv(
        self, x: str, cin: int, cout: int, k: int = 1, bias: bool = True, group: int = 1
    ) -> str:
        name = self.name("conv")
        w = self.g.rand(f"{name}.w", (cout, cin // group, k, k))
        inputs = [x, w] + ([self.g.rand(f"{name}.b", (cout,))] if bias else [])
        return self.g.op(
            "Conv", inputs, name=name, kernel_shape=[k, k], pads=[k // 2] * 4, group=group
        )

    def bn(self, x: str, c: int) -> str:
        name = self.name("bn")
        params = [self.g.rand(f"{name}.{p}", (c,), 0.5, 1.5) for p in ("s", "b", "m", "v")]
        return self.g.op("BatchNormalization", [x, *params], name=name)

    def act(self, x: str, kind: str) -> str:
        return x if kind == "none" else self.g.op(kind, [x], name=self.name(kind.lower()))


def _block(b: _Builder, x: str, c: int, h: int, blk: Spec) -> tuple[str, int, int]:
    g, kind = b.g, blk["kind"]
    if kind == "conv":
        y = b.conv(x, c, blk["cout"], blk["k"], blk["bias"])
        y = b.bn(y, blk["cout"]) if blk["bn"] else y
        return b.act(y, blk["act"]), blk["cout"], h
    if kind == "residual":
        y = b.conv(x, c, c, 3, not blk["bn"])
        y = b.bn(y, c) if blk["bn"] else y
        return g.op("Add", [x, y], name=b.name("add")), c, h
    if kind == "concat":
        y = b.act(b.conv(x, c, blk["cout"], 3), "Relu")
        return g.op("Concat", [x, y], name=b.name("cat"), axis=1), c + blk["cout"], h
    if kind == "split":
        first = blk["first"]
        parts = g.multi("Split", [x, b.ints([first, c - first])], 2, name=b.name("split"), axis=1)
        outs = [b.conv(p, n, co) for p, n, co in zip(parts, (first, c - first), blk["couts"])]
        return g.op("Concat", outs, name=b.name("cat"), axis=1), sum(blk["couts"]), h
    if kind == "slice":
        start, end = blk["start"], blk["end"]
        args = [b.ints([start]), b.ints([end]), b.ints([1])]
        return g.op("Slice", [x, *args], name=b.name("slice")), end - start, h
    if kind == "gather":
        idx = blk["indices"]
        return g.op("Gather", [x, b.ints(idx)], name=b.name("gather"), axis=1), len(idx), h
    if kind == "depthwise":
        cout = c * blk["mult"]
        return b.act(b.conv(x, c, cout, 3, True, group=c), "Relu"), cout, h
    if kind == "grouped":
        return b.conv(x, c, blk["cout"], 3, True, group=2), blk["cout"], h
    if kind == "se":
        s = g.op("GlobalAveragePool", [x], name=b.name("gap"))
        s = b.conv(b.act(b.conv(s, c, blk["hidden"]), "Relu"), blk["hidden"], c)
        return g.op("Mul", [x, g.op("Sigmoid", [s], name=b.name("gate"))], name=b.name("se")), c, h
    if kind == "pad":
        lo, hi = blk["lo"], blk["hi"]
        if blk["channels"]:
            pads = [0, lo, 0, 0, 0, hi, 0, 0]
            return g.op("Pad", [x, b.ints(pads)], name=b.name("pad")), c + lo + hi, h
        pads = [0, 0, lo, lo, 0, 0, lo, lo]
        return g.op("Pad", [x, b.ints(pads)], name=b.name("pad")), c, h + 2 * lo
    if kind == "resize":
        scales = g.init(b.name("scales"), np.array([1, 1, 2, 2], np.float32))
        y = g.op("Resize", [x, "", scales], name=b.name("resize"), mode="nearest")
        return g.op("MaxPool", [y], name=b.name("pool"), kernel_shape=[2, 2], strides=[2, 2]), c, h
    if kind == "mlp":
        y = g.op("Transpose", [x], name=b.name("nhwc"), perm=[0, 2, 3, 1])
        name = b.name("mm")
        y = g.op("MatMul", [y, g.rand(f"{name}.w", (c, blk["hidden"]))], name=name)
        y = g.op("Add", [y, g.rand(f"{name}.b", (blk["hidden"],))], name=b.name("bias"))
        y = b.act(y, "Relu")
        name = b.name("mm")
        y = g.op("MatMul", [y, g.rand(f"{name}.w", (blk["hidden"], c))], name=name)
        y = g.op("Transpose", [y], name=b.name("nchw"), perm=[0, 3, 1, 2])
        return (g.op("Add", [x, y], name=b.name("add")) if blk["residual"] else y), c, h
    if kind == "affine":
        y = g.op("Mul", [x, g.rand(b.name("scale"), (1, c, 1, 1), 0.5, 1.5)], name=b.name("mul"))
        return g.op("Add", [y, g.rand(b.name("shift"), (1, c, 1, 1))], name=b.name("add")), c, h
    raise ValueError(f"unknown block {kind}")


def build(spec: Spec) -> onnx.ModelProto:
    b = _Builder(spec["seed"])
    c = spec["stem"]
    x = b.act(b.conv("input", 3, c, 3), "Relu")
    h = 8
    for blk in spec["blocks"]:
        x, c, h = _block(b, x, c, h, blk)
    g = b.g
    if spec["head"] == "gap":
        x, k = g.op("GlobalAveragePool", [x], name="head_gap"), c
    else:
        k = c * h * h
    x = g.op("Flatten", [x], name="head_flatten", axis=1)
    y = g.op("Gemm", [x, g.rand("fc.w", (5, k)), g.rand("fc.b", (5,))], name="fc", transB=1)
    return g.model(y, (1, 5), 18)


def random_importances(model: onnx.ModelProto, seed: int) -> dict[str, list[float]]:
    """A uniform random vector per channel producer (keyed by node name), with some ties."""
    from tests.models.importances import importances_for

    rng = np.random.default_rng(seed)
    return {
        name: [float(v) for v in np.round(rng.random(n), 1 if seed % 3 == 0 else 6)]
        for name, n in importances_for(model).items()
    }


# ----------------------------------------------------------------------------- hypothesis


@st.composite
def _blocks(draw: st.DrawFn, c: int) -> list[Spec]:
    blocks: list[Spec] = []
    h = 8
    for _ in range(draw(st.integers(1, 5))):
        kinds = [
            k for k in KINDS if not (k == "grouped" and c % 2) and not (k == "split" and c < 2)
        ]
        if c >= MAX_CHANNELS:
            kinds = [k for k in kinds if k not in ("concat", "depthwise", "pad")]
        kind = draw(st.sampled_from(kinds))
        blk: Spec = {"kind": kind}
        chans = st.integers(1, 8)
        if kind == "conv":
            blk |= {"cout": draw(chans), "k": draw(st.sampled_from([1, 3])), "bias": draw(st.booleans()),
                    "bn": draw(st.booleans()), "act": draw(st.sampled_from(ACTIVATIONS))}  # fmt: skip
            c = blk["cout"]
        elif kind == "residual":
            blk["bn"] = draw(st.booleans())
        elif kind == "concat":
            blk["cout"] = draw(st.integers(1, 4))
            c += blk["cout"]
        elif kind == "split":
            blk["first"] = draw(st.integers(1, c - 1))
            blk["couts"] = [draw(chans), draw(chans)]
            c = sum(blk["couts"])
        elif kind == "slice":
            start = draw(st.integers(0, c - 1))
            end = draw(st.integers(start + 1, c))
            blk |= {"start": start, "end": end}
            c = end - start
        elif kind == "gather":
            idx = draw(st.lists(st.integers(0, c - 1), min_size=1, max_size=c, unique=True))
            blk["indices"] = idx
            c = len(idx)
        elif kind == "depthwise":
            blk["mult"] = draw(st.sampled_from([1, 2]))
            c *= blk["mult"]
        elif kind == "grouped":
            blk["cout"] = 2 * draw(st.integers(1, 4))
            c = blk["cout"]
        elif kind == "se":
            blk["hidden"] = draw(st.integers(1, 4))
        elif kind == "pad":
            blk["channels"] = draw(st.booleans()) and h > 0
            blk["lo"], blk["hi"] = draw(st.integers(0, 2)), draw(st.integers(0, 2))
            if blk["channels"]:
                c += blk["lo"] + blk["hi"]
            elif h + 2 * blk["lo"] <= 12:
                h += 2 * blk["lo"]
            else:
                blk["lo"] = 0
        elif kind == "mlp":
            blk |= {"hidden": draw(chans), "residual": draw(st.booleans())}
        blocks.append(blk)
    return blocks


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    stem = draw(st.integers(2, 8))
    blocks = draw(_blocks(stem))
    if draw(st.booleans()):
        policy: Spec = {"ratio": draw(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))}
        policy["scope"] = draw(st.sampled_from(["global", "local"]))
    else:
        policy = {"threshold": draw(st.sampled_from([0.2, 0.5, 0.8]))}
    policy["aggregate"] = draw(st.sampled_from(["max", "mean", "sum"]))
    policy["min_channels"] = draw(st.sampled_from([1, 1, 2]))
    return {
        "seed": draw(st.integers(0, 2**16)),
        "stem": stem,
        "blocks": blocks,
        "head": draw(st.sampled_from(["gap", "flatten"])),
        "policy": policy,
        "imp_seed": draw(st.integers(0, 2**16)),
    }
