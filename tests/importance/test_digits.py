"""A real trained model: a small CNN trained on scikit-learn's bundled digits (committed weights).

Shows why importances are normalised per node before a global cut: with ``rank`` (the default)
a 5% global L1 cut keeps the accuracy close to the original and takes about 5% of every layer;
raw norms and ``mean`` normalisation concentrate the cut on the layers whose filter norms vary
most (here the first conv) and lose far more accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxrecede
from onnxrecede.importance.criteria import compute_importances
from onnxrecede.io.model_files import load_model

pytest.importorskip("sklearn")


@pytest.fixture(scope="session")
def digits_model() -> Path:
    """The policy CNN (widths 32/64/128), trained once and committed: fixed weights, so the
    accuracies below are the same on every CPU (``tests/fixtures/digits_models.py`` regenerates
    it)."""
    from tests.fixtures.digits_models import POLICY_CNN

    return POLICY_CNN


def _accuracy(model) -> float:
    from onnxrecede.data.digits import load_digits_split
    from onnxrecede.runtime.session import cpu_session

    x, y = load_digits_split("test")
    proto = onnxrecede.io.model_files.ir.to_proto(model) if not isinstance(model, Path) else None
    session = cpu_session(proto.SerializeToString() if proto is not None else str(model), None)
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    return float((logits.argmax(axis=1) == y).mean())


def _cut(path: Path, normalize: str, ratio: float):
    imp = compute_importances(load_model(path), "l1", normalize=normalize).scores
    model, report = onnxrecede.prune(path, {k: v.tolist() for k, v in imp.items()}, ratio=ratio)
    sizes = {k: len(v) for k, v in imp.items()}
    share = {k: len(v) / sizes[k] for k, v in report.removed_channels.items()}
    return _accuracy(model), share


def test_normalised_global_l1_cut_keeps_accuracy(digits_model):
    original = _accuracy(digits_model)
    assert original >= 0.95  # the fixture really trained
    ranked, ranked_share = _cut(digits_model, "rank", 0.05)
    raw, raw_share = _cut(digits_model, "none", 0.05)
    mean, mean_share = _cut(digits_model, "mean", 0.05)
    summary = f"original {original:.3f}, rank {ranked:.3f}, raw {raw:.3f}, mean {mean:.3f}"
    assert ranked >= original - 0.03, summary
    assert max(ranked_share.values()) <= 0.1, ranked_share  # small everywhere
    # contrast: raw norms and mean normalisation cut one layer deep and lose much more
    assert max(raw_share.values()) >= 0.15 and max(mean_share.values()) >= 0.15, (
        raw_share,
        mean_share,
    )
    assert ranked - max(raw, mean) >= 0.1, summary
