"""Verification must reject broken pruned models: a bias one short, an input-channel mismatch,
the wrong channel removed; the command line then exits 4 and writes nothing."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine import verify
from onnxrecede.errors import VerificationError
from tests.engine.oracle import masked_oracle
from tests.engine.rules.helpers import IMP, sandwich
from tests.models.handmade import GraphBuilder


def _model():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        params = [g.rand(f"bn.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias", "mean", "var")]
        return g.op("BatchNormalization", [x, *params], name="bn"), 8

    return sandwich(middle)


def _node(model: ir.Model, name: str) -> ir.Node:
    return next(n for n in model.graph if n.name == name)


def _set_input(model: ir.Model, node: str, index: int, array: np.ndarray) -> None:
    value = _node(model, node).inputs[index]
    assert value is not None
    value.const_value = ir.Tensor(np.ascontiguousarray(array), name=value.name)
    value.shape = ir.Shape(array.shape)


def _pruned(importances=IMP):
    model, _ = onnxrecede.prune(_model(), importances, ratio=0.5, verify=False)
    return model


def _const(model: ir.Model, node: str, index: int) -> np.ndarray:
    value = _node(model, node).inputs[index]
    assert value is not None and value.const_value is not None
    return value.const_value.numpy()


def test_the_unbroken_model_passes():
    report = verify.verify(_pruned(), masked_oracle(_model(), IMP, ratio=0.5))
    assert report.masked_reference == "passed" and report.consistency == "passed"


def test_bias_one_short():
    pruned = _pruned()
    _set_input(pruned, "conv_a", 2, _const(pruned, "conv_a", 2)[:3])
    assert verify.check_consistency(pruned) == [
        "Conv 'conv_a': bias has 3 entries for 4 output channels"
    ]
    with pytest.raises(VerificationError, match="conv_a"):
        verify.verify(pruned, masked_oracle(_model(), IMP, ratio=0.5))


def test_input_channel_mismatch():
    pruned = _pruned()
    original = onnxrecede.load_model(_model())
    _set_input(pruned, "conv_b", 1, _const(original, "conv_b", 1))  # still reads 8 channels
    assert verify.check_consistency(pruned) == [
        "Conv 'conv_b': input has 4 channels, weight expects 8"
    ]
    with pytest.raises(VerificationError, match="conv_b"):
        verify.verify(pruned, masked_oracle(_model(), IMP, ratio=0.5))


def test_norm_parameters_mismatch():
    pruned = _pruned()
    _set_input(pruned, "bn", 3, np.ones(5, np.float32))
    assert verify.check_consistency(pruned) == [
        "BatchNormalization 'bn': parameter 3 has 5 entries for 4 channels"
    ]


def test_gemm_and_matmul_inner_dimensions():
    g = GraphBuilder()
    x = g.op("Flatten", [g.op("GlobalAveragePool", [g.conv("input", "conv_a", 3, 8)])])
    y = g.op("Gemm", [x, g.rand("w1", (8, 6))], name="fc1")
    y = g.op("MatMul", [y, g.rand("w2", (6, 4))], name="mm")
    model = onnxrecede.load_model(g.model(y, (1, 4), 21))
    from onnxrecede.engine.shapes import infer_shapes

    infer_shapes(model)
    assert verify.check_consistency(model) == []
    _set_input(model, "fc1", 1, np.ones((7, 6), np.float32))
    _set_input(model, "mm", 1, np.ones((5, 4), np.float32))
    assert verify.check_consistency(model) == [
        "Gemm 'fc1': A has inner dimension 8, B has 7",
        "MatMul 'mm': A has inner dimension 6, B has 5",
    ]


def test_wrong_channel_removed():
    """Valid and consistent, but conv_a lost channels 0, 2, 4, 6 instead of 1, 3, 5, 7."""
    wrong = _pruned({"conv_a": [1 - v for v in IMP["conv_a"]]})
    assert verify.check_consistency(wrong) == []
    with pytest.raises(VerificationError, match="masked reference"):
        verify.verify(wrong, masked_oracle(_model(), IMP, ratio=0.5))


@pytest.mark.parametrize("breakage", ["bias", "wrong_channel"])
def test_cli_exits_4_and_writes_nothing(breakage, tmp_path, monkeypatch):
    import json

    import onnx

    import onnxrecede.api as api

    real_rewrite = api.rewrite

    def broken_rewrite(analysis, keep_element, *args, **kwargs):
        if breakage == "wrong_channel":
            keep_element = keep_element.copy()
            view = analysis.ctx.channel_outputs[_node(analysis.model, "conv_a")]
            keep_element[view.labels] = ~keep_element[view.labels]
        result = real_rewrite(analysis, keep_element, *args, **kwargs)
        if breakage == "bias":
            _set_input(analysis.model, "conv_a", 2, _const(analysis.model, "conv_a", 2)[:3])
        return result

    monkeypatch.setattr(api, "rewrite", broken_rewrite)
    model, imp, out = tmp_path / "m.onnx", tmp_path / "imp.json", tmp_path / "out" / "p.onnx"
    onnx.save(_model(), str(model))
    imp.write_text(json.dumps(IMP))
    out.parent.mkdir()
    r = CliRunner().invoke(main, ["prune", str(model), "-i", str(imp), "-o", str(out)])
    assert r.exit_code == 4, r.output
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert ("conv_a" if breakage == "bias" else "masked reference") in r.stderr
    assert list(out.parent.iterdir()) == []
