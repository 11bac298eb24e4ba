"""A short rni run on synthetic data, exported, then pruned at ratio 0.5 by the engine.

Stated tolerance: the pruned model's test accuracy (ONNX Runtime, before any fine-tuning) stays
within ACC_TOLERANCE of the unpruned ONNX model's.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import onnxrecede  # noqa: E402
from onnxrecede.importance.file_format import load_importances  # noqa: E402
from onnxrecede.train.data import load_data, normalize  # noqa: E402
from onnxrecede.train.export import export_model, importances_to_export  # noqa: E402
from onnxrecede.train.loop import TrainConfig, fit  # noqa: E402

ACC_TOLERANCE = 0.05
RATIO = 0.5


def _accuracy(path, x, y) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float((out.argmax(1) == y).mean())


def test_rni_prune_half_removes_low_importance_and_keeps_accuracy(tmp_path):
    cfg = TrainConfig(
        model="vgg16",
        method="rni",
        data="synthetic:1000",
        epochs=6,
        width=0.125,
        batch_size=32,
        lr=0.05,
        milestones=(0.67,),
        augment=False,
        strength=5e-2,
        shift=1.0,
        seed=0,
    )
    bundle = load_data(cfg.data, cfg.val_fraction, cfg.seed)
    res = fit(cfg, bundle=bundle)
    imps = importances_to_export(res.model, "rni")
    onnx_path, imp_path = tmp_path / "model.onnx", tmp_path / "imp.json"
    export_model(res.model, onnx_path, imp_path, imps, exporter="dynamo")

    pruned, report = onnxrecede.prune(onnx_path, imp_path, ratio=RATIO, scope="global")
    onnxrecede.save_model(pruned, tmp_path / "pruned.onnx")

    scores = load_importances(imp_path).scores
    removed = np.concatenate(
        [scores[k][list(idx)] for k, idx in report.removed_channels.items() if len(idx)]
    )
    kept = np.concatenate(
        [np.delete(scores[k], list(report.removed_channels.get(k, []))) for k in scores]
    )
    assert 0.4 * sum(len(v) for v in scores.values()) <= len(removed)
    assert removed.max() <= np.quantile(np.concatenate(list(scores.values())), RATIO) + 1e-9
    assert removed.mean() < 0.2 * kept.mean()

    assert bundle.test is not None
    x = normalize(bundle.test.images, bundle.mean, bundle.std).numpy()
    y = bundle.test.labels.numpy()
    before = _accuracy(onnx_path, x, y)
    after = _accuracy(tmp_path / "pruned.onnx", x, y)
    assert before > 0.3  # it learned something (chance is 0.1)
    assert after >= before - ACC_TOLERANCE, (before, after)
