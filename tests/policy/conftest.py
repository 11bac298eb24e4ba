"""Fixtures for the policy tests: a ResNet-50-sized and a MobileNetV2-sized model, exported once.

The architectures are the ones ``benchmarks/speedup.py`` times (torchvision layouts written with
plain torch modules), at 64x64 input so that verification runs stay cheap; channel counts,
parameters and the graph structure are those of the full-size models.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

LargePath = Callable[..., Path]


@pytest.fixture(scope="session")
def large_path(tmp_path_factory: pytest.TempPathFactory) -> LargePath:
    """``large_path("resnet50" | "mobilenetv2", exporter) -> Path``, exported once per session."""
    from benchmarks.speedup import MobileNetV2, ResNet50, _randomised, export_torchscript

    root = tmp_path_factory.mktemp("large")
    builders = {"resnet50": ResNet50, "mobilenetv2": MobileNetV2}
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, exporter: str = "torchscript") -> Path:
        """``torchscript``: BN folded; ``torchscript_bn``: BatchNormalization nodes kept."""
        if (name, exporter) not in cache:
            from tests.models.export import export_model

            module = _randomised(builders[name]())
            path = root / f"{name}.{exporter}.onnx"
            cache[name, exporter] = (
                export_torchscript(module, (1, 3, 64, 64), path)
                if exporter == "torchscript"
                else export_model(module, (1, 3, 64, 64), path, exporter)  # type: ignore[arg-type]
            )
        return cache[name, exporter]

    return get
