"""Fixtures for the policy tests: a ResNet-50-sized and a MobileNetV2-sized model, exported once.

The architectures are the ones ``benchmarks/speedup.py`` times (torchvision layouts written with
plain torch modules), at 64x64 input so that verification runs stay cheap; channel counts,
parameters and the graph structure are those of the full-size models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

LargePath = Callable[[str], Path]


@pytest.fixture(scope="session")
def large_path(tmp_path_factory: pytest.TempPathFactory) -> LargePath:
    """``large_path("resnet50" | "mobilenetv2") -> Path``, exported once per session."""
    from benchmarks.speedup import MobileNetV2, ResNet50, _randomised, export_torchscript

    root = tmp_path_factory.mktemp("large")
    builders = {"resnet50": ResNet50, "mobilenetv2": MobileNetV2}
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            module = _randomised(builders[name]())
            cache[name] = export_torchscript(module, (1, 3, 64, 64), root / f"{name}.onnx")
        return cache[name]

    return get
