"""``importances --criterion activation`` on attention blocks: every q/k/v channel of a head
scores the head's share of the attention output (onnxrecede/importance/head_shares.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxrecede.importance.criteria import compute_importances
from onnxrecede.io.model_files import load_model
from tests.models.attention import AttentionSpec, attention_model


@pytest.mark.parametrize("layout", ["separate", "split", "mha"])
def test_activation_scores_heads_by_their_share_of_the_output(tmp_path, layout):
    spec = AttentionSpec(layout=layout, heads=3, head_dim=2, tokens=4, batch=1)
    model = attention_model(spec)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, spec.tokens, spec.width)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    imp = compute_importances(
        load_model(model), "activation", normalize="none", calibration=str(tmp_path / "calib.npz"),
        batch_size=1,
    )  # fmt: skip
    share = _shares(model, x, spec)
    for key, n in spec.projections().items():
        per_channel = np.repeat(share, spec.head_dim)
        np.testing.assert_allclose(
            imp.scores[key], np.tile(per_channel, n // spec.width), rtol=1e-6
        )
    assert np.isclose(share.sum(), 1.0)


def _shares(model: onnx.ModelProto, x: np.ndarray, spec: AttentionSpec) -> np.ndarray:
    """By hand: mean |input of the output projection| per channel, summed per head, shared."""
    parts = [_channel_abs(model, x[i : i + 1], spec) for i in range(len(x))]
    per_head = np.mean(parts, axis=0).reshape(spec.heads, spec.head_dim).sum(axis=1)
    return per_head / per_head.sum()


def _channel_abs(model: onnx.ModelProto, x: np.ndarray, spec: AttentionSpec) -> np.ndarray:
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info("merge_out"))
    sess = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    merged = sess.run(["merge_out"], {"input": x})[0]
    return np.abs(merged.astype(np.float64)).reshape(-1, spec.width).mean(axis=0)
