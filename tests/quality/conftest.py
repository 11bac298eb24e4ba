"""The trained digits model, built once per test session (shared by pytest-xdist workers)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: each worker trains its own
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained on scikit-learn's digits (plain BatchNorm), exported BN-folded."""
    pytest.importorskip("sklearn")
    torch = pytest.importorskip("torch")
    from tests.quality.digits_model import export, train

    # xdist workers share the parent of their base temp folder: the first trains, others wait
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    path = shared / "digits_cnn.onnx"
    with _locked(shared / "digits_cnn.lock"):
        if not path.exists():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the same numbers on every machine and under xdist
            try:
                model = train()
            finally:
                torch.set_num_threads(threads)
            export(model, shared / "digits_cnn.tmp.onnx").replace(path)
    return path
