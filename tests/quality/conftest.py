"""The trained digits model, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained on scikit-learn's digits (plain BatchNorm), exported BN-folded."""
    pytest.importorskip("sklearn")
    torch = pytest.importorskip("torch")
    from tests.quality.digits_model import export, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers on every machine and under pytest-xdist
    try:
        model = train()
    finally:
        torch.set_num_threads(threads)
    return export(model, tmp_path_factory.mktemp("digits") / "digits_cnn.onnx")
