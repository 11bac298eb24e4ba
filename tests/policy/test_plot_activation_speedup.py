"""`inspect --plot`, the `activation` criterion and the `--target-speedup` search (timing stubbed)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine.cost import count_cost
from onnxrecede.policy import speedup as speedup_search


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ----------------------------------------------------------------------------- activation

W = np.array([[1.0, 0, 0], [0, 2.0, 0], [0.5, 0.5, 0.5], [0, 0, -1.0]], np.float32)
B = np.array([0.0, 0.1, -100.0, 0.2], np.float32)  # channel 2 is always zeroed by the Relu


def _act_model(path):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1),
    ]
    rng = np.random.default_rng(0)
    inits = {"w": W.reshape(4, 3, 1, 1), "b": B, "w2": rng.standard_normal((6, 4, 1, 1)),
             "w3": rng.standard_normal((2, 6))}  # fmt: skip
    graph = helper.make_graph(
        nodes, "act",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def test_activation_is_mean_abs_output_after_the_activation(tmp_path):
    path = _act_model(tmp_path / "act.onnx")
    x = np.random.default_rng(1).standard_normal((7, 3, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    out = tmp_path / "imp.json"
    r = _run(["importances", path, "-o", out, "-c", "activation", "--calibration",
              tmp_path / "calib.npz", "--batch-size", "3", "--normalize", "none", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    relu = np.maximum(np.einsum("oc,nchw->nohw", W, x) + B[None, :, None, None], 0)
    np.testing.assert_allclose(doc["importances"]["conv"], np.abs(relu).mean(axis=(0, 2, 3)),
                               rtol=1e-5)  # fmt: skip
    assert doc["importances"]["conv"][2] == 0.0
    assert (
        doc["producer"]["criterion"] == "activation"
        and "calib.npz" in doc["producer"]["calibration"]
    )
    _, report = onnxrecede.prune(path, out, ratio=0.25)
    assert report.removed_channels["conv"] == [2]


def test_activation_on_a_zoo_model_writes_a_file_prune_accepts(zoo_path, tmp_path):
    path = zoo_path("resnet_basic", "dynamo_noopt")
    np.savez(tmp_path / "c.npz", x=np.random.default_rng(0).random((5, 3, 16, 16), np.float32))
    out = tmp_path / "imp.json"
    r = _run(
        [
            "importances",
            path,
            "-o",
            out,
            "-c",
            "activation",
            "--calibration",
            tmp_path / "c.npz",
            "-q",
        ]
    )
    assert r.exit_code == 0, r.output
    _, report = onnxrecede.prune(path, out, ratio=0.3)
    assert report.channels_removed > 0 and report.verification["masked_reference"] == "passed"


# ----------------------------------------------------------------------------- plot


def _bimodal_imp(path, tmp_path):
    rng = np.random.default_rng(0)
    scores = {}
    for n in onnx.load(str(path)).graph.node:
        if n.op_type == "Conv":
            c = next(
                t for t in onnx.load(str(path)).graph.initializer if t.name == n.input[1]
            ).dims[0]
            scores[n.name] = np.where(
                rng.random(c) < 0.3, rng.uniform(1e-4, 1e-3, c), rng.uniform(0.6, 1, c)
            ).tolist()
    imp = tmp_path / "imp.json"
    imp.write_text(json.dumps(scores))
    return imp


def test_inspect_plot_writes_a_png_with_the_counts(zoo_path, tmp_path):
    path = zoo_path("vgg_chain_bn", "torchscript")
    imp = _bimodal_imp(path, tmp_path)
    png = tmp_path / "h.png"
    r = _run(["inspect", path, "-i", imp, "--plot", png, "--log", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["below"] + doc["above"] == doc["channels"] and doc["below"] > 0
    assert 1e-3 < doc["threshold"] < 0.6 and "auto" in doc["how"]
    _, report = onnxrecede.prune(path, imp, ratio="auto", verify=False)
    assert report.channels_removed == doc["below"]


def test_inspect_plot_without_matplotlib_prints_text_and_a_hint(zoo_path, tmp_path, monkeypatch):
    path = zoo_path("vgg_chain_bn", "torchscript")
    imp = _bimodal_imp(path, tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "h.png"
    r = _run(["inspect", path, "-i", imp, "--plot", png, "--ratio", "0.5"])
    assert r.exit_code == 0, r.output
    assert not png.exists()
    assert "pip install 'onnxrecede[plot]'" in r.stderr
    rows = [line for line in r.stdout.splitlines() if ".." in line]
    assert (
        len(rows) == 20
        and sum(
            int(line.split()[-1].replace("<-", "") or 0)
            for line in rows
            if not line.endswith("threshold")
        )
        > 0
    )
    m = re.search(
        r"threshold [0-9.e-]+ \(--ratio 0.5 \(global\)\): (\d+) below, (\d+) at or above", r.stdout
    )
    assert m and abs(int(m.group(1)) - int(m.group(2))) <= 2


# ----------------------------------------------------------------------------- target speedup


@pytest.fixture
def modelled_speed(monkeypatch):
    """Replace timing by a deterministic model: speedup = (MACs ratio) ** 0.7."""

    def measure(reference, candidate, shapes, options):
        ratio = count_cost(reference).macs / count_cost(candidate).macs
        return ratio**0.7, 1e-3, 1e-3 / ratio**0.7

    monkeypatch.setattr(speedup_search, "_measure", measure)


def test_target_speedup_picks_the_smallest_cut_that_reaches_it(modelled_speed, zoo_path, tmp_path):
    path = zoo_path("resnet_bottleneck", "dynamo")
    imp = _bimodal_imp(path, tmp_path)
    r = _run(["prune", path, "-i", imp, "-o", tmp_path / "p.onnx", "--target-speedup", "1.5",
              "--search-rounds", "5", "--json", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    search = doc["policy"]["speedup_search"]
    reached = [p for p in search["curve"] if p["speedup"] >= 1.5]
    assert search["measured_speedup"] >= 1.5
    chosen = max(reached, key=lambda p: p["macs_fraction"])
    assert chosen["target_macs"] == search["chosen_target_macs"]
    assert (doc["macs"]["before"] / doc["macs"]["after"]) ** 0.7 >= 1.5
    assert len(search["curve"]) <= 6 and doc["verification"]["masked_reference"] == "passed"


def test_target_speedup_unreachable_exits_5(modelled_speed, zoo_path, tmp_path):
    path = zoo_path("resnet_bottleneck", "dynamo")
    out = tmp_path / "p.onnx"
    r = _run(
        ["prune", path, "-i", _bimodal_imp(path, tmp_path), "-o", out, "--target-speedup", "500"]
    )
    assert r.exit_code == 5
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --target-speedup 500 is unreachable: the largest cut")
    assert not out.exists()
