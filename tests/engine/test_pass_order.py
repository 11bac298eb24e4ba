"""The engine's pass order is enforced: mask_consumers before rewrite, rewrite once."""

from __future__ import annotations

import pytest

from onnxrecede.engine.analysis import analyze
from onnxrecede.engine.plan import Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.importance.file_format import load_importances, resolve_importances
from onnxrecede.io.model_files import load_model
from tests.engine.rules.helpers import IMP, sandwich


def _analysed():
    m = load_model(sandwich(lambda g, x: (x, 8)))
    analysis = analyze(m)
    imp = load_importances(IMP)
    scores = {r.value: (k, imp.scores[k]) for k, r in resolve_importances(m, imp).items()}
    return analysis, make_plan(analysis, scores, Policy(ratio=0.5)).keep_element


def test_mask_then_rewrite():
    analysis, keep = _analysed()
    masked = mask_consumers(analysis, keep)
    rewrite(analysis, keep)
    assert analysis.rewritten
    assert masked is not analysis.model


def test_mask_after_rewrite_is_refused():
    analysis, keep = _analysed()
    rewrite(analysis, keep)
    with pytest.raises(RuntimeError, match="before rewrite"):
        mask_consumers(analysis, keep)


def test_rewrite_twice_is_refused():
    analysis, keep = _analysed()
    rewrite(analysis, keep)
    with pytest.raises(RuntimeError, match="already applied"):
        rewrite(analysis, keep)
