"""The masked-reference tolerance is judged against each output's scale (issue 7).

A model with activations around 1e5..1e7 differs from its masked reference only by float32
rounding, which an elementwise abs-AND-rel rule flags; a wrong channel must still fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import onnxrecede
from onnxrecede import api
from onnxrecede.engine.analysis import analyze
from onnxrecede.engine.plan import Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.engine.verify import verify, write_scratch
from onnxrecede.errors import InputError, VerificationError
from onnxrecede.importance.file_format import load_importances
from onnxrecede.io.model_files import load_model
from onnxrecede.runtime import session as runtime
from tests.models import large_activations

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return large_activations.write(tmp_path_factory.mktemp("large"))


def _old_rule_failures(ref: np.ndarray, cand: np.ndarray, atol: float, rtol: float) -> int:
    """Elements failing the former elementwise rule: abs diff > atol AND rel diff > rtol."""
    diff = np.abs(ref.astype(np.float64) - cand)
    rel = diff / np.maximum(np.abs(ref.astype(np.float64)), np.finfo(np.float64).tiny)
    return int(np.count_nonzero((diff > atol) & (rel > rtol)))


def _outputs(path) -> tuple[dict, np.ndarray]:
    session = runtime.cpu_session(str(path))
    feeds = runtime.random_inputs(session)
    return feeds, session.run(None, feeds)[0]


def test_rounding_noise_fails_elementwise_but_passes_scaled_rule(large):
    _, ref = _outputs(large)
    assert np.abs(ref).max() > 1e6  # large activations indeed
    # float32 rounding noise of the kind a different summation order gives: a few ulps of
    # the terms, i.e. ~1e-7 of the output's scale, on every element
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(ref.shape) * 2e-7 * float(np.abs(ref).max())
    cand = (ref.astype(np.float64) + noise).astype(np.float32)
    assert _old_rule_failures(ref, cand, 1e-5, 1e-5) > 0
    cmp = runtime.compare_outputs([ref], [cand], 1e-5, 1e-5, names=["y"])
    assert cmp.passed and cmp.failed == 0
    (out,) = cmp.outputs
    assert out.name == "y" and not out.shape_mismatch and out.size == ref.size
    assert out.scale == pytest.approx(float(np.abs(ref).max()))
    assert out.max_abs_diff > 1e-5 and out.max_rel_diff < 1e-5


def test_pruning_a_large_activation_model_verifies(large):
    model, report = onnxrecede.prune(large, large_activations.importances(), ratio=0.5)
    v = report.verification
    assert v is not None and v["masked_reference"] == "passed"
    assert report.channels_removed > 0
    (out,) = v["outputs"]
    assert out["name"] == "y" and out["failed"] == 0 and out["scale"] > 1e6
    assert v["max_rel_diff"] < 1e-5
    assert v["tolerance"] == {"atol": 1e-5, "rtol": 1e-5, "rule": v["tolerance"]["rule"]}


def _plan(path):
    m = load_model(path)
    analysis = analyze(m)
    imp = load_importances(large_activations.importances())
    plan = make_plan(analysis, api._scores(m, imp), Policy(0.5))
    return m, analysis, plan


def _swap_one_channel(analysis, keep: np.ndarray, producer: str) -> np.ndarray:
    """The same number of channels kept, but one removed channel of ``producer`` swapped for a
    kept one: shapes match, numbers must not."""
    view = next(v for n, v in analysis.ctx.channel_outputs.items() if n.name == producer)
    labels = np.asarray(view.labels)
    removed = labels[~keep[labels]]
    kept = labels[keep[labels]]
    assert len(removed) and len(kept)
    wrong = keep.copy()
    wrong[removed[0]], wrong[kept[0]] = True, False
    return wrong


@pytest.mark.parametrize("producer", large_activations.SCORED)
def test_a_wrong_channel_removed_fails(large, producer):
    m, analysis, plan = _plan(large)
    masked = mask_consumers(analysis, plan.keep_element, lazy=True)
    rewrite(analysis, _swap_one_channel(analysis, plan.keep_element, producer))
    with pytest.raises(VerificationError, match="differs from the masked reference") as e:
        verify(m, masked)
    assert "output 'y'" in str(e.value) and "of the scale" in str(e.value)


def test_the_right_channels_pass_against_the_same_reference(large):
    m, analysis, plan = _plan(large)
    masked = mask_consumers(analysis, plan.keep_element, lazy=True)
    rewrite(analysis, plan.keep_element)
    report = verify(m, masked)
    assert report.masked_reference == "passed" and report.max_rel_diff is not None
    assert report.max_rel_diff < 1e-5


def test_lazy_and_eager_masks_write_the_same_reference(large, tmp_path):
    _, analysis, plan = _plan(large)
    eager = mask_consumers(analysis, plan.keep_element)
    lazy = mask_consumers(analysis, plan.keep_element, lazy=True)
    a = load_model(write_scratch(eager, tmp_path, "eager"))
    b = load_model(write_scratch(lazy, tmp_path, "lazy"))
    assert list(a.graph.initializers) == list(b.graph.initializers)
    for name, value in a.graph.initializers.items():
        x, y = value.const_value.numpy(), b.graph.initializers[name].const_value.numpy()
        np.testing.assert_array_equal(x, y)
    zeroed = eager.graph.initializers["conv1.weight"].const_value.numpy()
    assert (zeroed == 0).all(axis=(0, 2, 3)).any()  # removed input channels are zero


def test_compare_outputs_is_typed():
    ref = [np.array([[1.0, 2.0]], dtype=np.float32), np.zeros((2, 3), np.float32)]
    same = runtime.compare_outputs(ref, ref, 1e-5, 1e-5, names=["a", "b"])
    assert same.passed and same.max_abs_diff == 0.0 and same.max_rel_diff == 0.0
    shape = runtime.compare_outputs(ref, [ref[0], np.zeros((3, 2), np.float32)], 1e-5, 1e-5)
    assert not shape.passed
    assert [o.shape_mismatch for o in shape.outputs] == [False, True]
    assert shape.outputs[1].failed == 6 and shape.outputs[1].name == "output 1"
    missing = runtime.compare_outputs(ref, ref[:1], 1e-5, 1e-5, names=["a", "b"])
    assert not missing.passed and missing.outputs[1].shape_mismatch
    off = runtime.compare_outputs([ref[0]], [np.array([[1.0, 2.1]], np.float32)], 1e-5, 1e-5)
    (o,) = off.outputs
    assert o.failed == 1 and o.scale == 2.0 and o.max_rel_diff == pytest.approx(0.05, rel=1e-5)


def test_nan_is_only_equal_to_nan():
    nan = np.array([np.nan, 1.0], np.float32)
    assert runtime.compare_outputs([nan], [nan.copy()], 1e-5, 1e-5).passed
    cmp = runtime.compare_outputs([nan], [np.array([0.0, 1.0], np.float32)], 1e-5, 1e-5)
    assert not cmp.passed and cmp.failed == 1 and math.isinf(cmp.max_abs_diff)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1e-5])
def test_bad_tolerances_are_input_errors(large, tmp_path, bad):
    one = [np.ones(2, np.float32)]
    with pytest.raises(InputError, match="atol"):
        runtime.compare_outputs(one, one, bad, 1e-5)
    with pytest.raises(InputError, match="rtol"):
        verify(load_model(large), None, rtol=bad)
    with pytest.raises(InputError, match="atol"):
        onnxrecede.prune(large, large_activations.importances(), atol=bad)
    with pytest.raises(InputError, match="rtol"):
        api.prune_file(large, large_activations.importances(), tmp_path / "p.onnx", rtol=bad)
    assert not (tmp_path / "p.onnx").exists()
    from onnxrecede.bench.options import BenchOptions

    with pytest.raises(InputError, match="rtol"):
        BenchOptions(rtol=bad)
