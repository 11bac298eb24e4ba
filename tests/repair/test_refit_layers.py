"""Reconstruction of each linear layer type against a least-squares solution computed here.

Each model is ``input -> Conv p (1x1, the pruned producer) -> Relu -> layer L -> output``; the
importances remove channels of ``p``, so ``L`` loses inputs (a depthwise ``L`` loses its outputs
too). ``p`` itself is not refitted, so ``L``'s input in the pruned model is the original's kept
channels. The oracle builds ``L``'s design matrix with ONNX Runtime, one run per unknown with a
one-hot weight (not with the library's row gathers), and solves it with ``numpy.linalg.lstsq``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxrecede import api
from onnxrecede.repair.steps import RepairOptions
from onnxrecede.runtime.probe import Probe

C_IN, C_MID, HW, N = 3, 6, 6, 12
REMOVED = [1, 4]


def _model(layer: onnx.NodeProto, arrays: dict[str, np.ndarray], extra=(), tail=()):
    rng = np.random.default_rng(0)
    arrays = {"p.w": rng.normal(0, 0.5, (C_MID, C_IN, 1, 1)).astype(np.float32),
              "p.b": rng.normal(0, 0.5, C_MID).astype(np.float32), **arrays}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "p.w", "p.b"], ["p_out"], name="p"),
        helper.make_node("Relu", ["p_out"], ["h"], name="relu"),
        *extra,
        layer,
        *tail,
    ]
    shape = ["N", C_IN, HW, HW]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _run(model, x: np.ndarray, name: str) -> np.ndarray:
    return Probe(model, [name], include_outputs=False).run({"input": x})[name]


def _design(model: onnx.ModelProto, data: np.ndarray, wname: str, group_of) -> np.ndarray:
    """Columns: the layer's output with one weight entry 1, the rest 0 (and no bias)."""
    w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == wname))
    cols = []
    for flat in range(w.size):
        one = np.zeros(w.size, dtype=np.float32)
        one[flat] = 1
        m = onnx.ModelProto()
        m.CopyFrom(model)
        for init in m.graph.initializer:
            if init.name == wname:
                init.CopyFrom(numpy_helper.from_array(one.reshape(w.shape), wname))
            elif init.name.endswith(".b2"):
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)),
                                                      init.name))  # fmt: skip
        out = Probe(m, ["output"], include_outputs=False).run({"h": data})["output"]
        cols.append(group_of(out, flat, w.shape))
    return np.stack(cols, axis=-1)


def _layer_only(model: onnx.ModelProto, keep_in: np.ndarray, wname: str, axis: int,
                keep_out: np.ndarray | None = None) -> onnx.ModelProto:  # fmt: skip
    """The layer alone with input ``h`` (kept channels), weights sliced like the engine."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.name == "L")
    node.input[0], node.output[0] = "h", "output"
    for a in node.attribute:
        if a.name == "group" and keep_out is not None:
            a.i = len(keep_out)
    del m.graph.node[:]
    m.graph.node.extend([node])
    for init in m.graph.initializer:
        if init.name == wname:
            w = np.take(numpy_helper.to_array(init), keep_in, axis=axis)
            if keep_out is not None:
                w = np.take(w, keep_out, axis=0)
            init.CopyFrom(numpy_helper.from_array(w, wname))
        elif init.name.endswith(".b2") and keep_out is not None:
            b = np.take(numpy_helper.to_array(init), keep_out)
            init.CopyFrom(numpy_helper.from_array(b, init.name))
    del m.graph.input[:]
    m.graph.input.extend([helper.make_tensor_value_info("h", TensorProto.FLOAT, None)])
    return m


def _data(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (N, C_IN, HW, HW)).astype(np.float32)


def _prune(model, tmp_path: Path, x: np.ndarray):
    np.savez(tmp_path / "c.npz", x=x)
    imp = {"p": [0.0 if i in REMOVED else 1.0 for i in range(C_MID)]}
    repair = RepairOptions(reconstruct=True, calibration=str(tmp_path / "c.npz"), ridge=0.0)
    return api.prune(model, imp, threshold=0.5, repair=repair)


def _weight(pruned) -> np.ndarray:
    """L's weight in the pruned model."""
    node = next(n for n in pruned.graph if n.name == "L")
    return np.asarray(node.inputs[1].const_value.numpy())  # type: ignore[union-attr]


KEEP = np.array([i for i in range(C_MID) if i not in REMOVED])


def _solve(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per output column, lstsq on [design, 1]; returns [unknowns + 1, outputs]."""
    a = np.hstack([design, np.ones((len(design), 1))])
    return np.linalg.lstsq(a.astype(np.float64), target.astype(np.float64), rcond=None)[0]


CONV_CASES = {
    "conv3x3": ("Conv", {"kernel_shape": [3, 3], "pads": [1, 0, 1, 2], "strides": [2, 1]}, (4, C_MID, 3, 3)),
    "conv_dilated": ("Conv", {"kernel_shape": [2, 3], "dilations": [2, 1]}, (5, C_MID, 2, 3)),
    "conv_transpose": ("ConvTranspose", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 0, 1]},
                       (C_MID, 4, 3, 3)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_layers_match_least_squares(case: str, tmp_path: Path) -> None:
    op, attrs, wshape = CONV_CASES[case]
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, wshape).astype(np.float32)
    cout = wshape[0] if op == "Conv" else wshape[1]
    b = rng.normal(0, 0.5, cout).astype(np.float32)
    layer = helper.make_node(op, ["h", "L.w", "L.b2"], ["output"], name="L", **attrs)
    model = _model(layer, {"L.w": w, "L.b2": b})
    x = _data()
    h = _run(model, x, "h")
    target = _run(model, x, "output")  # [N, cout, H', W']
    in_axis = 1 if op == "Conv" else 0
    alone = _layer_only(model, KEEP, "L.w", in_axis)

    def column(out, flat, shape):  # every output channel reads the same one-hot: take channel 0's
        o = np.unravel_index(flat, shape)[0 if op == "Conv" else 1]
        return out[:, o].reshape(-1)

    # the design of output channel o: columns for weight entries of that channel
    design = _design(alone, h[:, KEEP], "L.w", column)  # [N*H'*W', entries]
    pruned, report = _prune(model, tmp_path, x)
    got = _weight(pruned)
    sliced_shape = np.take(w, KEEP, axis=in_axis).shape
    for o in range(cout):
        mask = np.zeros(sliced_shape, dtype=bool)
        if op == "Conv":
            mask[o] = True
        else:
            mask[:, o] = True
        cols = design[..., mask.reshape(-1)]
        theta = _solve(cols, target[:, o].reshape(-1))
        want = theta[:-1]
        have = got[o].reshape(-1) if op == "Conv" else got[:, o].reshape(-1)
        np.testing.assert_allclose(have, want, rtol=1e-3, atol=1e-4)
    entry = report.repair["reconstruction"]["consumers"][0]  # type: ignore[index]
    assert (entry["node"], entry["op_type"], entry["applied"]) == ("L", op, True)
    assert entry["rows"] == target[:, 0].size  # every output position is a row


def test_depthwise_conv_is_refitted_per_channel(tmp_path: Path) -> None:
    """A depthwise L loses the removed channels' outputs; each kept channel's taps and bias are
    the least-squares fit of its original output from its (changed) input."""
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.5, (C_MID, 1, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.5, C_MID).astype(np.float32)
    layer = helper.make_node("Conv", ["h2", "L.w", "L.b2"], ["l_out"], name="L",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=C_MID)  # fmt: skip
    r = rng.normal(0, 0.5, (2, C_MID, 1, 1)).astype(np.float32)
    tail = [helper.make_node("Conv", ["l_out", "r.w"], ["output"], name="r")]
    # q: a 1x1 conv after p, cut with p, so L's kept input channels change
    q = rng.normal(0, 0.5, (C_MID, C_MID, 1, 1)).astype(np.float32)
    extra = [helper.make_node("Conv", ["h", "q.w"], ["h2"], name="q")]
    model = _model(layer, {"L.w": w, "L.b2": b, "q.w": q, "r.w": r}, extra=extra, tail=tail)
    x = _data()
    np.savez(tmp_path / "c.npz", x=x)
    imp = {"p": [0.0 if i in REMOVED else 1.0 for i in range(C_MID)], "q": [0.0, 1, 1, 1, 0, 1]}
    repair = RepairOptions(reconstruct=True, calibration=str(tmp_path / "c.npz"), ridge=0.0)
    pruned, report = api.prune(model, imp, threshold=0.5, repair=repair)
    kept_q = np.array([1, 2, 3, 5])
    h2 = _run(pruned, x, "h2")  # q refitted first; L reads this
    target = _run(model, x, "l_out")[:, kept_q]
    got = _weight(pruned)
    for j, o in enumerate(kept_q):
        single = onnx.ModelProto()
        single.CopyFrom(model)
        alone = _layer_only(single, np.array([0]), "L.w", 1, keep_out=np.array([o]))
        design = _design(alone, h2[:, j : j + 1], "L.w", lambda out, f, s: out[:, 0].reshape(-1))
        theta = _solve(design, target[:, j].reshape(-1))
        np.testing.assert_allclose(got[j].reshape(-1), theta[:-1], rtol=1e-3, atol=1e-4)
    nodes = [e["node"] for e in report.repair["reconstruction"]["consumers"]]  # type: ignore[index]
    assert nodes == ["q", "L", "r"]


def _gemm_model(op: str, pooled: bool):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.5, (C_MID, 5)).astype(np.float32)
    b = rng.normal(0, 0.5, 5).astype(np.float32)
    if op == "Gemm":
        layer = helper.make_node("Gemm", ["f", "L.w", "L.b2"], ["output"], name="L")
        arrays = {"L.w": w, "L.b2": b}
        extra_tail = []
    else:
        layer = helper.make_node("MatMul", ["f", "L.w"], ["output"], name="L")
        arrays = {"L.w": w}
        extra_tail = []
    pool = helper.make_node("GlobalAveragePool", ["h"], ["g"], name="gap")
    if not pooled:
        pool = helper.make_node("MaxPool", ["h"], ["g"], name="gmp", kernel_shape=[HW, HW])
    extra = [pool, helper.make_node("Flatten", ["g"], ["f"], name="flat"), *extra_tail]
    return _model(layer, arrays, extra=extra), w, (b if op == "Gemm" else np.zeros(5))


@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
@pytest.mark.parametrize("pooled", [True, False], ids=["after_global_pool", "per_sample"])
def test_gemm_and_matmul_match_least_squares(op: str, pooled: bool, tmp_path: Path, caplog) -> None:
    model, w, b = _gemm_model(op, pooled)
    x = _data()
    with caplog.at_level(logging.WARNING):
        pruned, report = _prune(model, tmp_path, x)
    got = _weight(pruned)
    h = _run(model, x, "h")
    if pooled:  # case 3: rows are the pool input's positions, targets W x + b there
        rows = np.moveaxis(h, 1, -1).reshape(-1, C_MID)
        target = rows @ w + b
        design = rows[:, KEEP]
    else:
        f = _run(model, x, "f")
        design, target = f[:, KEEP], _run(model, x, "output")
    theta = _solve(design, target)
    np.testing.assert_allclose(got, theta[:-1], rtol=1e-3, atol=1e-4)
    entry = report.repair["reconstruction"]["consumers"][0]  # type: ignore[index]
    assert entry["rows"] == (N * HW * HW if pooled else N)
    assert entry["rows_from"] == ("pool input positions" if pooled else "output positions")
    assert "fewer calibration rows than unknowns" not in caplog.text


def test_underdetermined_layer_is_a_warning(tmp_path: Path, caplog) -> None:
    model, _, _ = _gemm_model("Gemm", pooled=False)
    x = _data()[:3]  # 3 rows for 5 unknowns (4 kept inputs + bias)
    with caplog.at_level(logging.WARNING):
        _, report = _prune(model, tmp_path, x)
    assert report.repair["reconstruction"]["underdetermined"] == ["L"]  # type: ignore[index]
    assert "warning: 1 layer(s) had fewer calibration rows than unknowns" in caplog.text
    assert ": L (give more --calibration samples)" in caplog.text
