"""Accuracy in ONNX Runtime: agreement with numpy, top-5, fixed batch sizes, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxrecede.errors import InputError
from onnxrecede.runtime.evaluate import evaluate, rank_of_labels
from onnxrecede.runtime.probe import Probe
from tests.models.small import small_cnn


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(45, 3, 8, 8)).astype(np.float32)
    logits = Probe(small_cnn(), [], include_outputs=True).run({"input": x})["logits"]
    y = np.argsort(-logits, axis=1)[np.arange(45), rng.integers(0, 8, 45)]  # varied ranks
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return tmp_path / "d.npz", logits, y


def test_accuracy_equals_numpy_on_ort_outputs(labelled) -> None:
    path, logits, y = labelled
    acc = evaluate(small_cnn(), str(path), batch_size=8)
    top1 = np.mean(np.argmax(logits, axis=1) == y)
    top5 = np.mean([y[i] in np.argsort(-logits[i])[:5] for i in range(len(y))])
    assert 0 < top1 < 1 and 0 < top5 < 1
    assert acc.top1 == pytest.approx(top1) and acc.top5 == pytest.approx(top5)
    assert (acc.samples, acc.classes, acc.output) == (45, 10, "logits")


def test_fixed_batch_model_is_padded(labelled) -> None:
    path, logits, y = labelled
    acc = evaluate(small_cnn(batch=4), str(path), batch_size=32)  # 45 = 11 * 4 + 1
    assert acc.samples == 45
    assert acc.top1 == pytest.approx(np.mean(np.argmax(logits, axis=1) == y))


def test_rank_counts_strictly_higher_scores() -> None:
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [3.0, 2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(rank_of_labels(scores, np.array([2, 3])), [0, 3])
    with pytest.raises(InputError, match=r"labels range over 0..4 but the model scores 4"):
        rank_of_labels(scores, np.array([0, 4]))


def test_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"has no labels; accuracy needs them"):
        evaluate(small_cnn(), str(tmp_path / "nolabels.npz"))
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 3, 8, 8), np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(InputError, match=r"no output 'probs'; its outputs: logits"):
        evaluate(small_cnn(), str(tmp_path / "d.npz"), output="probs")
