"""The importances file: formats, validation errors, key resolution."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest

from onnxrecede.errors import ImportancesError
from onnxrecede.importance.file_format import (
    load_importances,
    resolve_importances,
    save_importances,
)


def _write(tmp_path, text, name="imp.json"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_full_and_bare_forms_agree(tmp_path):
    full = {"format": "onnxrecede.importances", "version": 1, "producer": {"tool": "x"},
            "importances": {"a": [0.1, 0.2]}}
    a = load_importances(_write(tmp_path, json.dumps(full), "a.json"))
    b = load_importances(_write(tmp_path, json.dumps({"a": [0.1, 0.2]}), "b.json"))
    assert a.producer == {"tool": "x"}
    np.testing.assert_array_equal(a.scores["a"], b.scores["a"])


def test_save_roundtrip(tmp_path):
    p = tmp_path / "imp.json"
    save_importances(p, {"k": np.array([1.0, 2.0])}, {"tool": "test"})
    doc = json.loads(p.read_text())
    assert doc["format"] == "onnxrecede.importances" and doc["version"] == 1
    assert load_importances(p).scores["k"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "holds no keys"),
        ('{"a": []}', "non-empty list"),
        ('{"a": [1, "x"]}', "element 1"),
        ('{"a": [1, NaN]}', "finite"),
        ('{"a": [Infinity]}', "finite"),
        ('{"format": "other", "importances": {"a": [1]}}', "'format'"),
        ('{"format": "onnxrecede.importances", "version": 9, "importances": {"a": [1]}}', "version 9"),
    ],
)
def test_bad_files(tmp_path, text, message):
    with pytest.raises(ImportancesError, match=message):
        load_importances(_write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ImportancesError, match="not found"):
        load_importances(tmp_path / "nope.json")


def _model(handmade_path, name="split13"):
    return ir.load(handmade_path(name))


def test_resolve_by_node_output_and_weight_name(handmade_path):
    model = _model(handmade_path)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    n = conv.inputs[1].const_value.shape[0]
    for key in (conv.name, conv.outputs[0].name, conv.inputs[1].name):
        imp = load_importances({key: [1.0] * n})
        (r,) = resolve_importances(model, imp).values()
        assert r.node is conv


def test_unknown_key_names_candidates(handmade_path):
    model = _model(handmade_path)
    with pytest.raises(ImportancesError, match=r"'conv_x' matches no node.*nearest candidates: conv_"):
        resolve_importances(model, load_importances({"conv_x": [1.0]}))


def test_length_mismatch(handmade_path):
    model = _model(handmade_path)
    with pytest.raises(ImportancesError, match="has 3 values, but Conv 'conv_a' has 8 output channels"):
        resolve_importances(model, load_importances({"conv_a": [1.0, 2.0, 3.0]}))


def test_module_path_through_name_scopes(zoo_path):
    model = ir.load(zoo_path("resnet_basic", "dynamo"))
    imp = load_importances({"stem.1": [1.0] * 8})  # the BatchNorm fused into the stem conv
    (r,) = resolve_importances(model, imp).values()
    assert r.node.op_type == "Conv" and r.how == "module path"


def test_ambiguous_key(handmade_path, tmp_path):
    model = _model(handmade_path)
    convs = [n for n in model.graph if n.op_type == "Conv"][:2]
    # Name the second conv's output like the first conv: one key, two different nodes.
    convs[1].outputs[0].name = convs[0].name
    with pytest.raises(ImportancesError, match="ambiguous"):
        resolve_importances(model, load_importances({convs[0].name: [1.0] * 8}))
