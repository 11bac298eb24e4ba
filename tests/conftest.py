"""Shared fixtures: zoo models exported once per session, handmade models saved to disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from tests.models.importances import make_random_importances

__all__ = ["make_random_importances"]

ZooPath = Callable[[str, str], Path]


@pytest.fixture(scope="session")
def zoo_path(tmp_path_factory: pytest.TempPathFactory) -> ZooPath:
    """``zoo_path(name, exporter) -> Path``: the zoo model exported once per session."""
    from tests.models.export import export_model
    from tests.models.zoo import ZOO

    root = tmp_path_factory.mktemp("zoo")
    cache: dict[tuple[str, str], Path] = {}

    def get(name: str, exporter: str = "dynamo") -> Path:
        key = (name, exporter)
        if key not in cache:
            entry = ZOO[name]
            path = root / f"{name}.{exporter}.onnx"
            cache[key] = export_model(entry.build(), entry.input_shape, path, exporter)  # type: ignore[arg-type]
        return cache[key]

    return get


@pytest.fixture(scope="session")
def handmade_path(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``handmade_path(name) -> Path``: the handmade model saved once per session."""
    from tests.models.handmade import HANDMADE

    root = tmp_path_factory.mktemp("handmade")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            path = root / f"{name}.onnx"
            onnx.save(HANDMADE[name].build(), str(path))
            cache[name] = path
        return cache[name]

    return get


# Session fixtures shared by several test folders (tests/ mirrors the package tree).
from tests.fixtures.digits import digits_model  # noqa: E402, F401
from tests.fixtures.large_models import large_path  # noqa: E402, F401
