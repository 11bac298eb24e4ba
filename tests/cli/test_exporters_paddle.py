"""A paddle2onnx-style model (tests/models/paddle_like.py: every weight in a ``Constant`` node,
some behind Identity, Cast and DequantizeLinear, a legacy ``-1`` batch) through every command.

The expected numbers come from its *twin*, the same model written the plain way (float32
initializers, a symbolic batch): costs, importances, accuracy and the cut must be the same;
every cut equals the masked reference at batch sizes 1 and 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from tests.engine.oracle import assert_close, masked_oracle, run
from tests.models.paddle_like import CLASSES, INPUT, build_paddle_like

IMP = {
    "conv1": [0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4],
    "conv2": list(np.linspace(0, 1, 12)),
    "conv3": list(np.linspace(1, 0, 10)),
    "conv4": [0.5, 0.9, 0.1, 0.7, 0.3, 0.8],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paddle")
    onnx.save(build_paddle_like(), root / "paddle.onnx")
    onnx.save(build_paddle_like(twin=True), root / "twin.onnx")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((24, 3, 8, 8)).astype(np.float32)
    np.savez(root / "data.npz", x=x, labels=rng.integers(0, CLASSES, 24))
    (root / "imp.json").write_text(json.dumps(IMP))
    return {p.stem: p for p in root.iterdir()}


def _cli(*args: object) -> dict:
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout) if "--json" in args else {"out": r.stdout}


def test_legacy_batch_is_dynamic_and_cost_is_the_twins(files):
    paddle, twin = (
        _cli("inspect", files["paddle"], "--json"),
        _cli("inspect", files["twin"], "--json"),
    )
    assert (paddle["params"], paddle["macs"]) == (twin["params"], twin["macs"])
    assert paddle["macs"] == 172_830 and paddle["params"] == 2_779  # batch 1, BN stats excluded
    bound = _cli("inspect", files["paddle"], "--json", "--shape", "x:3x3x8x8")
    assert bound["macs"] == 3 * paddle["macs"]
    assert [g["producers"] for g in paddle["groups"]] == [g["producers"] for g in twin["groups"]]
    assert [g["status"] for g in paddle["groups"]] == ["unscored"] * 4 + ["blocked"]


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "activation"])
def test_importances_equal_the_twins(files, tmp_path, criterion):
    scores = {}
    for name in ("paddle", "twin"):
        out = tmp_path / f"{name}.json"
        data = ["--calibration", files["data"]] if criterion == "activation" else []
        _cli("importances", files[name], "-o", out, "-c", criterion, *data, "-q")
        scores[name] = json.loads(out.read_text())["importances"]
    assert scores["paddle"].keys() == scores["twin"].keys()
    expected = {"bn": {"conv1"}}.get(criterion, {"conv1", "conv2", "conv3", "conv4", "fc"})
    assert set(scores["paddle"]) == expected
    for key, vec in scores["twin"].items():
        np.testing.assert_allclose(scores["paddle"][key], vec, rtol=1e-5, atol=1e-6)


def test_eval_and_bench_read_the_legacy_batch(files):
    paddle = _cli("eval", files["paddle"], "--data", files["data"], "--json", "-q")
    twin = _cli("eval", files["twin"], "--data", files["data"], "--json", "-q")
    assert paddle["samples"] == 24 and (paddle["top1"], paddle["top5"]) == (
        twin["top1"],
        twin["top5"],
    )
    r = CliRunner().invoke(
        main,
        ["bench", str(files["paddle"]), str(files["twin"]), "--seconds", "0.05", "--json", "-"],
    )
    assert r.exit_code == 0, r.output
    bench, _ = json.JSONDecoder().raw_decode(r.stdout)  # the table follows the document
    assert bench["max_abs_diff"] < 1e-5 and bench["top1_agreement"] == 1.0
    assert [m["macs"] for m in bench["models"]] == [172_830, 172_830]
    assert bench["models"][0]["cost_input_shapes"] == {INPUT: [1, 3, 8, 8]}


def test_prune_slices_constant_weights_like_initializers(files, tmp_path):
    out = tmp_path / "pruned.onnx"
    report = _cli(
        "prune", files["paddle"], "-i", files["imp"], "-o", out, "--ratio", "0.5", "--json", "-q"
    )
    twin = _cli("prune", files["twin"], "-i", files["imp"], "-o", tmp_path / "t.onnx",
                "--ratio", "0.5", "--json", "-q")  # fmt: skip
    assert report["removed_channels"] == twin["removed_channels"]
    assert report["removed_channels"]["conv4"] == [2, 4]  # the lowest of IMP["conv4"]
    assert (report["params"], report["macs"]) == (twin["params"], twin["macs"])
    assert report["macs"]["before"] == 172_830 and report["params"]["before"] == 2_779
    assert report["verification"]["masked_reference"] == "passed"
    pruned = onnx.load(out)
    assert pruned.graph.input[0].type.tensor_type.shape.dim[0].dim_value <= 0
    kept = {k: n - len(report["removed_channels"][k])
            for k, n in {"conv1": 8, "conv2": 12, "conv3": 10, "conv4": 6}.items()}  # fmt: skip
    _assert_weights_stay_stored_as_exported(pruned, kept)
    for batch in (1, 3):
        feeds = {
            INPUT: np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
        }
        expected, _ = run(masked_oracle(files["paddle"], IMP, ratio=0.5), feeds)
        assert_close(expected, run(out, feeds)[0])


def _assert_weights_stay_stored_as_exported(pruned: onnx.ModelProto, kept: dict[str, int]) -> None:
    """Constants stay Constant nodes, the float16 weight float16, the int8 weight int8 with
    its per-channel scale and zero point sliced to the output channels kept."""
    k1, k2, k3, k4 = kept["conv1"], kept["conv2"], kept["conv3"], kept["conv4"]
    assert not pruned.graph.initializer
    consts = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
              for n in pruned.graph.node if n.op_type == "Constant"}  # fmt: skip
    assert consts["conv1.w_0"].shape == (k1, 3, 3, 3) and consts["bn1.w_1"].shape == (k1,)
    assert consts["conv2.w_0"].shape == (k2, k1, 3, 3)
    assert consts["conv3.w_0"].dtype == np.float16 and consts["conv3.w_0"].shape == (k3, k2, 3, 3)
    assert consts["conv4.w_0"].dtype == np.int8 and consts["conv4.w_0"].shape == (k4, k3, 3, 3)
    assert consts["conv4.scale"].shape == consts["conv4.zero"].shape == (k4,)
    assert consts["fc.w_0"].shape == (k4, CLASSES)
    assert min(kept.values()) < max(kept.values()) <= 10


def test_prune_with_data_paths_on_the_legacy_batch(files, tmp_path):
    report = _cli("prune", files["paddle"], "-i", files["imp"], "-o", tmp_path / "c.onnx",
                  "--ratio", "0.5", "--compensate", "--calibration", files["data"],
                  "--eval-data", files["data"], "--json", "-q")  # fmt: skip
    assert report["accuracy"]["samples"] == 24
    assert report["verification"]["masked_reference"] == "passed"


def test_api_prune_equals_masked_reference_through_every_chain(files):
    pruned, report = onnxrecede.prune(files["paddle"], IMP, ratio=0.5)
    assert sorted(report.removed_channels) == ["conv1", "conv2", "conv3", "conv4"]
    expected, feeds = run(masked_oracle(files["paddle"], IMP, ratio=0.5))
    assert_close(expected, run(pruned, feeds)[0])
    original, _ = run(files["paddle"], feeds)
    assert not np.allclose(original[0], expected[0])


def test_weight_names_of_constant_weights_key_importances(files):
    """paddle2onnx names each weight's Constant output after the weight (``conv2.w_0``):
    such a key names the consumer, also through Identity, Cast and DequantizeLinear."""
    by_weight = {f"{node}.w_0": scores for node, scores in IMP.items()}
    _, expected = onnxrecede.prune(files["paddle"], IMP, ratio=0.5, verify=False)
    _, report = onnxrecede.prune(files["paddle"], by_weight, ratio=0.5, verify=False)
    assert report.removed_channels == expected.removed_channels and not report.unused_keys
