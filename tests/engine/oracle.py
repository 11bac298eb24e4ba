"""The test oracle: run models in ONNX Runtime and compare like Polygraphy does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort


def run(
    model: ir.Model | Path | str, feeds: dict[str, np.ndarray] | None = None
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Outputs of ``model`` on ``feeds`` (seeded random float inputs when None)."""
    payload = (
        ir.serde.serialize_model(model).SerializeToString()
        if isinstance(model, ir.Model)
        else str(model)
    )
    sess = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
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
