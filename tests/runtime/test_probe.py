"""Probing intermediate tensors with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxrecede.data.sources import open_samples
from onnxrecede.errors import InputError
from onnxrecede.runtime.probe import Probe, probe
from tests.models.small import small_cnn


def _relu_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 conv, padding 1, then relu (the oracle)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return np.maximum(out + b[None, :, None, None], 0)


@pytest.fixture
def samples(tmp_path: Path):
    x = np.random.default_rng(3).normal(size=(7, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(7))
    return open_samples(tmp_path / "d.npz", ["input"]), x


def test_probe_intermediates_match_numpy(samples) -> None:
    data, x = samples
    model = small_cnn()
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    before = model.SerializeToString()
    batches = list(probe(model, data, ["a_relu", "input", "fc.bias"], batch_size=3))
    assert model.SerializeToString() == before  # the caller's model is untouched
    assert [len(b["a_relu"]) for b in batches] == [3, 3, 1]
    assert set(batches[0]) == {"a_relu", "input", "fc.bias"}  # no model outputs unless asked
    got = np.concatenate([b["a_relu"] for b in batches])
    want = _relu_conv(x, inits["conv_a.weight"], inits["conv_a.bias"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), x)
    np.testing.assert_array_equal(batches[0]["fc.bias"], inits["fc.bias"])


def test_probe_with_outputs_and_progress(samples) -> None:
    data, x = samples
    model = ir.serde.deserialize_model(small_cnn())
    n_outputs = len(model.graph.outputs)
    calls: list[tuple[str, int, int]] = []
    p = Probe(model, ["b_relu"])
    assert len(model.graph.outputs) == n_outputs
    results = list(p.over(data, 4, lambda s, d, t: calls.append((s, d, t)), stage="calib"))
    assert calls == [("calib", 1, 2), ("calib", 2, 2)]
    batch, arrays = results[0]
    assert set(arrays) == {"b_relu", "logits"}
    np.testing.assert_array_equal(batch.labels, [0, 1, 2, 3])
    pooled = arrays["b_relu"].mean(axis=(2, 3))
    w = onnx.numpy_helper.to_array(
        next(t for t in small_cnn().graph.initializer if t.name == "fc.weight")
    )
    b = onnx.numpy_helper.to_array(
        next(t for t in small_cnn().graph.initializer if t.name == "fc.bias")
    )
    np.testing.assert_allclose(arrays["logits"], pooled @ w.T + b, rtol=1e-4, atol=1e-4)


def test_probe_type_from_shape_inference() -> None:
    model = small_cnn()
    del model.graph.value_info[:]
    p = Probe(model, ["pooled"], include_outputs=False)
    out = p.run({"input": np.ones((2, 3, 8, 8), np.float32)})
    assert out["pooled"].shape == (2, 6, 1, 1)


def test_probe_unknown_name() -> None:
    with pytest.raises(InputError, match=r"cannot probe tensor\(s\) 'nope': no value"):
        Probe(small_cnn(), ["nope"])


def test_probe_bad_feed_is_an_input_error() -> None:
    p = Probe(small_cnn(), [])
    with pytest.raises(InputError, match=r"onnxruntime cannot run the model on this data"):
        p.run({"input": np.ones((1, 3, 8), np.float32)})
