"""Whole residual branches removed when an inner group loses every channel (engine.branches)."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine import branches as branches_mod
from onnxrecede.engine.analysis import analyze
from onnxrecede.engine.branches import find_branches
from onnxrecede.errors import VerificationError
from onnxrecede.io.model_files import load_model
from tests.models.importances import make_random_importances

#: torch.onnx.export(dynamo=False) names the removed nodes after the modules; dynamo=True after
#: the op and a counter, so for it the op types are asserted and the names read off the graph
EXPECTED_TORCHSCRIPT = {
    "resnet_basic": [
        "/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/Relu", "/layer1/layer1.0/conv2/Conv",
    ],
    "resnet_bottleneck": [
        "/layer1/reduce/reduce.0/Conv", "/layer1/reduce/reduce.2/Relu",
        "/layer1/conv/conv.0/Conv", "/layer1/conv/conv.2/Relu", "/layer1/expand/expand.0/Conv",
    ],
    "mobilenetv2_block": [
        "/blocks/blocks.0/block/block.0/Conv", "/blocks/blocks.0/block/block.2/Constant",
        "/blocks/blocks.0/block/block.2/Constant_1", "/blocks/blocks.0/block/block.2/Clip",
        "/blocks/blocks.0/block/block.3/Conv", "/blocks/blocks.0/block/block.5/Constant",
        "/blocks/blocks.0/block/block.5/Constant_1", "/blocks/blocks.0/block/block.5/Clip",
        "/blocks/blocks.0/block/block.6/Conv",
    ],
}  # fmt: skip
EXPECTED_DYNAMO_OPS = {
    "resnet_basic": ["Conv", "Relu", "Conv"],
    "resnet_bottleneck": ["Conv", "Relu", "Conv", "Relu", "Conv"],
    "mobilenetv2_block": ["Conv", "Clip", "Conv", "Clip", "Conv"],
}
CASES = [(name, exp) for name in EXPECTED_TORCHSCRIPT for exp in ("torchscript", "dynamo")]


def _importances(path, group_producers):
    """High importances everywhere but the given producers', which fall below 0.01."""
    imp = {k: [0.5 + 0.5 * v for v in vals] for k, vals in make_random_importances(path).items()}
    for name in group_producers:
        imp[name] = [0.001] * len(imp[name])
    return imp


def _first_branch(path):
    analysis = analyze(load_model(path))
    branch = find_branches(analysis)[0]
    producers = [p for g in branch.groups[:1] for p in analysis.groups[g].producers]
    return branch, producers


@pytest.mark.parametrize("name, exporter", CASES)
def test_branch_goes_and_equals_the_masked_reference(name, exporter, zoo_path):
    path = zoo_path(name, exporter)
    branch, producers = _first_branch(path)
    pruned, report = onnxrecede.prune(path, _importances(path, producers), threshold=0.01)
    assert report.verification["masked_reference"] == "passed"
    (block,) = report.blocks_removed
    original = onnx.load(path)
    ops = {n.name: n.op_type for n in original.graph.node}
    if exporter == "torchscript":
        assert block["nodes"] == EXPECTED_TORCHSCRIPT[name]
    else:
        assert [ops[n] for n in block["nodes"] if ops[n] != "Constant"] == EXPECTED_DYNAMO_OPS[name]
    left = {n.name for n in pruned.graph}
    assert not left & set(block["nodes"])
    assert left == set(ops) - set(block["nodes"])  # nothing else went
    add = next(n for n in pruned.graph if n.name == block["add"])
    folded = [v for v in add.inputs if v is not None and v.is_initializer()]
    assert len(folded) == 1 and list(folded[0].shape)[2:] == [1, 1]
    assert set(producers) <= set(block["nodes"])
    assert not set(block["nodes"]) & set(report.removed_channels)  # reported as a block


def test_partial_cut_keeps_the_branch(zoo_path):
    path = zoo_path("resnet_basic", "torchscript")
    _, producers = _first_branch(path)
    imp = _importances(path, producers)
    imp[producers[0]][0] = 0.9  # one channel of the inner group stays
    pruned, report = onnxrecede.prune(path, imp, threshold=0.01)
    assert report.blocks_removed == []
    assert producers[0] in {n.name for n in pruned.graph}
    assert report.verification["masked_reference"] == "passed"


def test_min_channels_applies_only_to_what_remains(zoo_path):
    path = zoo_path("resnet_bottleneck", "torchscript")
    _, producers = _first_branch(path)
    _, report = onnxrecede.prune(path, _importances(path, producers), threshold=0.01, min_channels=4)
    assert len(report.blocks_removed) == 1 and report.restored_for_minimum == 0
    assert report.verification["masked_reference"] == "passed"


def test_verification_catches_a_wrong_folded_constant(zoo_path, monkeypatch):
    path = zoo_path("resnet_basic", "torchscript")
    _, producers = _first_branch(path)
    real = branches_mod.branch_constants

    def shifted(*args, **kwargs):
        return [a + 0.5 for a in real(*args, **kwargs)]

    monkeypatch.setattr("onnxrecede.api.branch_constants", shifted)
    with pytest.raises(VerificationError):
        onnxrecede.prune(path, _importances(path, producers), threshold=0.01)


def test_inspect_lists_removable_branches(zoo_path):
    path = zoo_path("resnet_bottleneck", "torchscript")
    r = CliRunner().invoke(main, ["inspect", str(path)])
    assert r.exit_code == 0 and "removable residual branches:" in r.output
    assert "into Add '/layer1/Add' (5 nodes; group" in r.output
    r = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    doc = json.loads(r.output)
    assert [b["add"] for b in doc["removable_branches"]] == ["/layer1/Add", "/layer2/Add"]
    assert doc["removable_branches"][0]["nodes"] == EXPECTED_TORCHSCRIPT["resnet_bottleneck"]


def test_no_branch_without_a_residual_add(zoo_path):
    analysis = analyze(load_model(zoo_path("densenet_concat", "dynamo")))
    assert find_branches(analysis) == []
