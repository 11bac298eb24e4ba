"""Fixtures of the bench tests: tiny models saved to disk (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.bench import models


@pytest.fixture(scope="session")
def classifier_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A classifier and a copy whose first conv is perturbed (same shapes, other outputs)."""
    root = tmp_path_factory.mktemp("bench-models")
    reference = models.classifier_model()
    perturbed = models.classifier_model()
    for i, init in enumerate(perturbed.graph.initializer):
        if init.name == "w1":
            w = numpy_helper.to_array(init).copy()
            w[0] += 0.5
            perturbed.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, "w1"))
    ref_path, cand_path = root / "reference.onnx", root / "perturbed.onnx"
    onnx.save(reference, ref_path)
    onnx.save(perturbed, cand_path)
    return ref_path, cand_path


@pytest.fixture(scope="session")
def narrow_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classifier with half the conv channels: same input, other MACs, same output shape."""
    path = tmp_path_factory.mktemp("bench-narrow") / "narrow.onnx"
    onnx.save(models.classifier_model(width=4), path)
    return path


def npz_for(path: Path, batch: int = 2) -> Path:
    rng = np.random.default_rng(7)
    npz = path.with_suffix(".npz")
    np.savez(npz, x=rng.standard_normal((batch, 3, 16, 16)).astype(np.float32))
    return npz
