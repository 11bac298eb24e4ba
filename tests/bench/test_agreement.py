"""Output agreement: exact zero against itself, non-zero when perturbed, top-1 on class scores."""

from __future__ import annotations

import numpy as np

from onnxrecede.bench.agreement import compare_models_outputs


def test_identical_outputs_agree_exactly() -> None:
    scores = np.random.default_rng(0).standard_normal((8, 10)).astype(np.float32)
    a = compare_models_outputs([scores], [scores.copy()], ["logits"])
    assert a.max_abs_diff == 0.0 and a.max_rel_diff == 0.0
    assert a.top1_agreement == 1.0 and a.outputs[0].failed == 0


def test_perturbed_outputs_and_top1() -> None:
    ref = np.zeros((4, 3), np.float32)
    ref[:, 0] = 1.0
    cand = ref.copy()
    cand[1] = [0.0, 2.0, 0.0]  # one row changes its argmax
    a = compare_models_outputs([ref], [cand], ["logits"], atol=1e-5, rtol=1e-5)
    assert a.max_abs_diff == 2.0
    assert a.top1_agreement == 0.75
    assert a.outputs[0].failed == 2  # [1, 0] and [1, 1]: abs and rel diffs over tolerance
    assert a.to_dict()["max_abs_diff"] == 2.0


def test_not_class_scores_have_no_top1_and_shape_mismatch_is_reported() -> None:
    feature_map = np.ones((1, 4, 2, 2), np.float32)
    a = compare_models_outputs([feature_map], [feature_map], ["y"])
    assert a.top1_agreement is None and a.max_abs_diff == 0.0
    b = compare_models_outputs([feature_map], [np.ones((1, 3, 2, 2), np.float32)], ["y"])
    assert not b.shapes_match and b.max_abs_diff is None


def test_outputs_are_matched_by_name() -> None:
    x, y = np.zeros((2, 2), np.float32), np.ones((2, 3), np.float32)
    a = compare_models_outputs([x, y], [y, x], ["a", "b"], ["b", "a"])
    assert a.shapes_match and a.max_abs_diff == 0.0
