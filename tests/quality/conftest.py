"""The trained digits model of the cut-quality tests: committed weights, the same on every CPU."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_model() -> Path:
    """A small CNN trained on scikit-learn's digits (plain BatchNorm), exported BN-folded and
    committed (``tests/data/digits_models.py`` regenerates it)."""
    pytest.importorskip("sklearn")
    from tests.data.digits_models import QUALITY_CNN

    return QUALITY_CNN
