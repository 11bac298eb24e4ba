"""Cut quality on a real trained model: the gains issue 10 asks for, on the digits CNN.

Importances: per-layer filter L1 (``onnxrecede.criteria``); a per-layer cut is ``scope=local``.
Calibration: 256 training images; accuracy: the 360 test images (1 point = 3.6 images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxrecede import api
from onnxrecede.data.sources import input_specs, open_samples
from onnxrecede.repair.steps import RepairOptions
from onnxrecede.runtime.evaluate import evaluate
from onnxrecede.runtime.probe import Probe


@pytest.fixture(scope="module")
def setting(digits_model: Path):
    from onnxrecede.importance.criteria import compute_importances
    from onnxrecede.io.model_files import load_model

    imp = compute_importances(load_model(digits_model), "l1")
    test = open_samples("digits:test", input_specs(str(digits_model)))
    return imp, test, evaluate(str(digits_model), test).top1


def _top1(model: Path, imp, test, ratio: float, repair: RepairOptions | None) -> float:
    pruned, _ = api.prune(str(model), imp, ratio=ratio, scope="local", repair=repair)
    return evaluate(pruned, test).top1


def test_eval_agrees_with_numpy_argmax(digits_model: Path, setting) -> None:
    _, test, top1 = setting
    from onnxrecede.data.digits import load_digits_split

    x, y = load_digits_split("test")
    logits = Probe(str(digits_model), [], include_outputs=True).run({"input": x})
    assert top1 == pytest.approx(np.mean(np.argmax(next(iter(logits.values())), axis=1) == y))
    assert top1 > 0.97  # a real, well-trained model


def test_cut_30_percent(digits_model: Path, setting) -> None:
    imp, test, original = setting
    plain = _top1(digits_model, imp, test, 0.3, None)
    compensated = _top1(digits_model, imp, test, 0.3, RepairOptions(compensate=True,
                        calibration="digits:train", limit=256))  # fmt: skip
    rec = RepairOptions(reconstruct=True, calibration="digits:train", limit=256)
    reconstructed = _top1(digits_model, imp, test, 0.3, rec)
    assert plain < original - 0.5  # plain pruning loses most of the accuracy
    assert compensated > plain
    assert reconstructed >= original - 0.01  # within 1 point


def test_cut_50_percent_reconstructed(digits_model: Path, setting) -> None:
    imp, test, original = setting
    rec = RepairOptions(reconstruct=True, calibration="digits:train", limit=256)
    assert _top1(digits_model, imp, test, 0.5, rec) >= original - 0.03  # within 3 points


def test_compensation_helps_a_small_cut(digits_model: Path, setting) -> None:
    imp, test, original = setting
    plain = _top1(digits_model, imp, test, 0.1, None)
    comp = RepairOptions(compensate=True, calibration="digits:train", limit=256)
    assert _top1(digits_model, imp, test, 0.1, comp) > plain + 0.1
