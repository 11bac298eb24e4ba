"""`onnxrecede importances`: every criterion writes a file that `prune` accepts, with the right values."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.errors import InputError
from onnxrecede.importance.criteria import compute_importances
from onnxrecede.importance.file_format import load_importances
from onnxrecede.io.model_files import load_model

STRUCTURAL = ("l1", "l2", "bn", "random")


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _weights(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize(
    ("source", "name", "exporter"),
    [
        ("zoo", "resnet_basic", "torchscript_bn"),
        ("zoo", "mobilenetv2_block", "torchscript_bn"),
        ("zoo", "densenet_concat", "torchscript_bn"),
        ("zoo", "channels_last_mlp", "dynamo"),
        ("handmade", "gemm_transb0", None),
        ("handmade", "grouped_conv", None),
    ],
)
def test_every_criterion_writes_a_file_prune_accepts(
    source, name, exporter, zoo_path, handmade_path, tmp_path
):
    path = zoo_path(name, exporter) if source == "zoo" else handmade_path(name)
    keeps_bn = exporter in ("torchscript_bn", "dynamo_noopt")
    for criterion in STRUCTURAL:
        if criterion == "bn" and not keeps_bn:
            continue
        imp = tmp_path / f"{criterion}.json"
        r = _run(["importances", path, "-o", imp, "-c", criterion, "-q"])
        assert r.exit_code == 0, (criterion, r.output)
        doc = json.loads(imp.read_text())
        assert doc["producer"]["criterion"] == criterion
        _, report = onnxrecede.prune(path, imp, ratio=0.3)
        assert report.channels_removed > 0, criterion
        assert report.verification["masked_reference"] == "passed"


def test_l1_l2_are_filter_norms_normalised_per_node(handmade_path):
    path = handmade_path("grouped_conv")
    weights = _weights(path)
    model = onnx.load(str(path))
    raw = compute_importances(load_model(path), "l1", normalize="none").scores
    mean = compute_importances(load_model(path), "l1", normalize="mean").scores
    rank = compute_importances(load_model(path), "l1").scores  # the default
    l2 = compute_importances(load_model(path), "l2", normalize="max").scores
    for node in model.graph.node:
        if node.op_type != "Conv" or node.name not in raw:
            continue
        w = weights[node.input[1]].astype(np.float64)
        expect = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        np.testing.assert_allclose(raw[node.name], expect, rtol=1e-9)
        np.testing.assert_allclose(mean[node.name], expect / expect.mean(), rtol=1e-9)
        order = np.argsort(np.argsort(expect, kind="stable"), kind="stable")
        np.testing.assert_allclose(rank[node.name], (order + 0.5) / len(expect))
        norms = np.sqrt((w**2).reshape(w.shape[0], -1).sum(axis=1))
        np.testing.assert_allclose(l2[node.name], norms / norms.max(), rtol=1e-9)
    assert len(raw) >= 3


def test_l1_folds_the_following_batchnorm(zoo_path):
    path = zoo_path("vgg_chain_bn", "torchscript_bn")
    model = onnx.load(str(path))
    weights = _weights(path)
    folded = compute_importances(load_model(path), "l1", normalize="none").scores
    unfolded = compute_importances(load_model(path), "l1", normalize="none", fold_bn=False).scores
    bn_after = {n.input[0]: n for n in model.graph.node if n.op_type == "BatchNormalization"}
    checked = 0
    for node in model.graph.node:
        bn = bn_after.get(node.output[0]) if node.op_type == "Conv" else None
        if bn is None:
            continue
        gamma, var = weights[bn.input[1]], weights[bn.input[4]]
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = np.abs(gamma) / np.sqrt(var + eps)
        np.testing.assert_allclose(folded[node.name], unfolded[node.name] * scale, rtol=1e-5)
        checked += 1
    assert checked >= 3


def test_bn_is_gamma_magnitude_and_names_nodes_without_bn(zoo_path):
    path = zoo_path("vgg_chain_bn", "torchscript_bn")
    model = onnx.load(str(path))
    weights = _weights(path)
    scores = compute_importances(load_model(path), "bn", normalize="none").scores
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            conv = next(n for n in model.graph.node if node.input[0] in n.output)
            np.testing.assert_allclose(scores[conv.name], np.abs(weights[node.input[1]]))
    assert scores and not any(n.op_type == "Gemm" and n.name in scores for n in model.graph.node)
    fused = zoo_path("vgg_chain_bn", "torchscript")  # BN folded by the exporter
    with pytest.raises(InputError, match=r"criterion 'bn' needs a BatchNormalization.*Conv '"):
        compute_importances(load_model(fused), "bn")


def test_bn_on_a_folded_export_exits_2_with_one_line(zoo_path, tmp_path):
    r = _run(["importances", zoo_path("vgg_chain_bn", "torchscript"), "-o", tmp_path / "i.json",
              "-c", "bn"])  # fmt: skip
    assert r.exit_code == 2
    assert r.stderr.startswith("error: criterion 'bn'") and r.stderr.count("\n") == 1
    assert not (tmp_path / "i.json").exists()


def test_random_is_seeded_and_bounded(handmade_path):
    path = handmade_path("split13")
    a = compute_importances(load_model(path), "random", seed=1).scores
    b = compute_importances(load_model(path), "random", seed=1).scores
    c = compute_importances(load_model(path), "random", seed=2).scores
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert all(((v >= 0) & (v < 1)).all() for v in a.values())


def test_activation_needs_calibration_and_rejects_it_elsewhere(handmade_path):
    path = handmade_path("split13")
    with pytest.raises(InputError, match="needs calibration data"):
        compute_importances(load_model(path), "activation")
    with pytest.raises(InputError, match="only used by --criterion activation"):
        compute_importances(load_model(path), "l1", calibration="x.npz")


def test_large_models_every_criterion(large_path, tmp_path):
    for name in ("resnet50", "mobilenetv2"):
        path = large_path(name)
        for criterion in ("l1", "l2", "random"):
            imp = tmp_path / f"{name}-{criterion}.json"
            r = _run(["importances", path, "-o", imp, "-c", criterion, "-q"])
            assert r.exit_code == 0, r.output
            loaded = load_importances(imp)
            convs = [n for n in onnx.load(str(path)).graph.node if n.op_type in ("Conv", "Gemm")]
            assert len(loaded) == len(convs)
            _, report = onnxrecede.prune(path, imp, ratio=0.3, verify=False)
            assert report.channels_removed > 0, (name, criterion)


def test_mobilenet_sized_model_bn_and_activation(large_path, tmp_path):
    path = large_path("mobilenetv2", "torchscript_bn")  # BatchNormalization nodes kept
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.random((4, 3, 64, 64), dtype=np.float32))
    for criterion, extra in (("bn", []), ("activation", ["--calibration", tmp_path / "calib.npz"])):
        imp = tmp_path / f"{criterion}.json"
        r = _run(["importances", path, "-o", imp, "-c", criterion, *extra, "-q"])
        assert r.exit_code == 0, r.output
        scored = load_importances(imp)
        assert len(scored) >= 52  # every conv followed by a BatchNormalization
        _, report = onnxrecede.prune(path, imp, ratio=0.3, verify=False)
        assert report.channels_removed > 0, criterion
