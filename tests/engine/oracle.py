"""The test oracle: run models in ONNX Runtime and compare like Polygraphy does.

The *masked reference* of a pruned model is the original model with every removed channel's
consuming weights zeroed; :func:`assert_equals_masked_oracle` builds it from a fresh analysis
and plan (never from the pruned model) and runs both in separate sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnxrecede.engine.analysis import analyze
from onnxrecede.engine.plan import Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers
from onnxrecede.importance.file_format import load_importances, resolve_importances
from onnxrecede.io.model_files import load_model


def _payload(model: ir.Model | onnx.ModelProto | Path | str) -> bytes | str:
    if isinstance(model, ir.Model):
        return ir.serde.serialize_model(model).SerializeToString()
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return str(model)


def run(
    model: ir.Model | onnx.ModelProto | Path | str, feeds: dict[str, np.ndarray] | None = None
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Outputs of ``model`` on ``feeds`` (seeded random float inputs when None)."""
    sess = ort.InferenceSession(_payload(model), providers=["CPUExecutionProvider"])
    if feeds is None:
        rng = np.random.default_rng(123)
        feeds = {
            i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(
                np.float32
            )
            for i in sess.get_inputs()
        }
    return sess.run(None, feeds), feeds


def assert_close(
    expected: list[np.ndarray], actual: list[np.ndarray], atol: float = 1e-5, rtol: float = 1e-5
) -> None:
    """An element fails only if abs diff > atol AND rel diff > rtol."""
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        diff = np.abs(e.astype(np.float64) - a.astype(np.float64))
        rel = diff / np.maximum(np.abs(e.astype(np.float64)), 1e-30)
        bad = (diff > atol) & (rel > rtol)
        assert not bad.any(), f"{int(bad.sum())} elements differ (max abs diff {diff.max():.3g})"


def masked_oracle(
    source: ir.Model | onnx.ModelProto | Path | str,
    importances: Mapping[str, Sequence[float]] | Any,
    **policy: Any,
) -> ir.Model:
    """The masked reference for ``source`` pruned with ``importances`` and ``policy``
    (``input_shapes``: the dims bound for the analysis, as ``prune``'s)."""
    input_shapes = policy.pop("input_shapes", None)
    m = load_model(source)
    policy = dict(policy)
    analysis = analyze(m, None, input_shapes, head_units=policy.pop("head_units", "heads"))
    imps = load_importances(importances)
    scores = {r.value: (k, imps.scores[k]) for k, r in resolve_importances(m, imps).items()}
    if policy.get("threshold") is not None:
        policy = {**policy, "ratio": None}
    plan = make_plan(analysis, scores, Policy(**policy))
    return mask_consumers(analysis, plan.keep_element)


def assert_equals_masked_oracle(
    source: ir.Model | onnx.ModelProto | Path | str,
    pruned: ir.Model | onnx.ModelProto | Path | str,
    importances: Mapping[str, Sequence[float]] | Any,
    **policy: Any,
) -> None:
    """``pruned`` computes what the masked reference of ``source`` computes (on inputs of the
    dims ``input_shapes`` binds, if given)."""
    rng = np.random.default_rng(123)
    bound = policy.get("input_shapes") or {}
    feeds = {n: rng.standard_normal(d).astype(np.float32) for n, d in bound.items()} or None
    expected, feeds = run(masked_oracle(source, importances, **policy), feeds)
    actual, _ = run(pruned, feeds)
    assert_close(expected, actual)
    assert all(np.isfinite(a).all() for a in actual)
