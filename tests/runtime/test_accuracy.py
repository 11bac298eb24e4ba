"""The accuracy comparison and its gate from Python: prune_file(..., evaluation=EvalOptions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxrecede.api import prune_file
from onnxrecede.errors import AccuracyDropError, InputError
from onnxrecede.runtime.accuracy import EvalOptions
from onnxrecede.runtime.probe import Probe
from tests.models.small import importances_removing, small_cnn


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    model = small_cnn(seed=4)
    onnx.save(model, str(tmp_path / "m.onnx"))
    x = np.random.default_rng(2).uniform(0, 1, (40, 3, 8, 8)).astype(np.float32)
    logits = Probe(model, [], include_outputs=True).run({"input": x})["logits"]
    np.savez(tmp_path / "eval.npz", x=x, y=np.argmax(logits, axis=1))  # the model scores 100%
    (tmp_path / "imp.json").write_text(json.dumps(importances_removing([0, 1, 2, 3], [0, 1, 2])))
    return {"model": tmp_path / "m.onnx", "eval": tmp_path / "eval.npz",
            "imp": tmp_path / "imp.json", "out": tmp_path / "p.onnx"}  # fmt: skip


def test_gate_raises_after_writing(files) -> None:
    options = EvalOptions(str(files["eval"]), max_drop=1.0)
    with pytest.raises(AccuracyDropError, match="the pruned model was written"):
        prune_file(files["model"], files["imp"], files["out"], threshold=0.5, evaluation=options)
    assert files["out"].is_file()


def test_without_gates_the_comparison_is_in_the_report(files) -> None:
    options = EvalOptions(str(files["eval"]), max_drop=1.0)
    report = prune_file(files["model"], files["imp"], files["out"], threshold=0.5,
                        evaluation=options, gates=False)  # fmt: skip
    acc = report.accuracy
    assert acc.original.top1 == 1.0 and acc.pruned.top1 < 0.99 and acc.samples == 40
    assert acc.top1_drop_points == pytest.approx(100 * (1 - acc.pruned.top1), abs=1e-3)
    assert report.to_dict()["accuracy"] == acc.to_dict()
    with pytest.raises(AccuracyDropError):
        report.check_gates()
    loose = prune_file(files["model"], files["imp"], files["out"], threshold=0.5,
                       evaluation=EvalOptions(str(files["eval"]), max_drop=100.0))  # fmt: skip
    assert loose.accuracy.pruned.top1 == acc.pruned.top1 and "bench" not in loose.to_dict()


def test_fail_below_needs_bench(files) -> None:
    with pytest.raises(InputError, match="--fail-below needs --bench"):
        prune_file(files["model"], files["imp"], files["out"], threshold=0.5, fail_below=1.2)
    assert not files["out"].exists()
