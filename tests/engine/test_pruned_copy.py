"""pruned_copy: a plan rewritten into a copy equals the in-place rewrite, the original untouched."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir
import pytest

from onnxrecede.engine import Policy, analyze, make_plan, pruned_copy
from onnxrecede.engine.rewrite import rewrite
from onnxrecede.importance.file_format import load_importances, scores_by_value
from onnxrecede.io.model_files import load_model

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _bytes(model: ir.Model) -> bytes:
    return ir.serde.serialize_model(model).SerializeToString()


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_pruned_copy_equals_rewrite_in_place(ratio: float) -> None:
    path, imp = SAMPLES / "resnet_small.onnx", load_importances(SAMPLES / "resnet_small.imp.json")
    m = load_model(path)
    analysis = analyze(m)
    plan = make_plan(analysis, scores_by_value(m, imp), Policy(ratio))
    untouched = _bytes(m)
    copies = [pruned_copy(analysis, plan.keep_element) for _ in range(2)]
    assert _bytes(m) == untouched  # the analysed model is not changed
    rewrite(analysis, plan.keep_element)
    assert _bytes(copies[0]) == _bytes(m) == _bytes(copies[1])
    assert len(_bytes(m)) < len(untouched)  # something was removed
    with pytest.raises(RuntimeError, match="before rewrite"):
        pruned_copy(analysis, plan.keep_element)
