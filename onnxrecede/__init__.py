"""onnxrecede: structured channel pruning of ONNX models.

The engine works on the exported graph alone: no training code and no torch are needed.

The public names below are imported on first use (PEP 562), so that ``import onnxrecede``
(and with it ``onnxrecede --help``, ``--version`` and usage errors) does not load onnx, onnx-ir,
ONNX Runtime or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxrecede.errors import (
    AccuracyDropError,
    ImportancesError,
    InputError,
    OnnxRecedeError,
    RuntimeUnavailableError,
    VerificationError,
)

__version__ = "0.1.0"

#: public name -> the module that defines it, imported when the name is first used
_LAZY = {
    "Importances": "onnxrecede.importances",
    "load_importances": "onnxrecede.importances",
    "save_importances": "onnxrecede.importances",
    "inspect": "onnxrecede.api",
    "prune": "onnxrecede.api",
    "Cost": "onnxrecede.cost",
    "count_cost": "onnxrecede.cost",
    "ImageOptions": "onnxrecede.data",
    "Samples": "onnxrecede.data",
    "open_samples": "onnxrecede.data",
    "load_model": "onnxrecede.model_io",
    "save_model": "onnxrecede.model_io",
    "RepairOptions": "onnxrecede.repair",
    "InspectReport": "onnxrecede.reports",
    "PruneReport": "onnxrecede.reports",
}

__all__ = [
    "AccuracyDropError",
    "Cost",
    "ImageOptions",
    "Importances",
    "ImportancesError",
    "InputError",
    "InspectReport",
    "OnnxRecedeError",
    "PruneReport",
    "RepairOptions",
    "RuntimeUnavailableError",
    "Samples",
    "VerificationError",
    "__version__",
    "count_cost",
    "inspect",
    "load_importances",
    "load_model",
    "open_samples",
    "prune",
    "save_importances",
    "save_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxrecede' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from onnxrecede.api import inspect, prune
    from onnxrecede.cost import Cost, count_cost
    from onnxrecede.data import ImageOptions, Samples, open_samples
    from onnxrecede.importances import Importances, load_importances, save_importances
    from onnxrecede.model_io import load_model, save_model
    from onnxrecede.repair import RepairOptions
    from onnxrecede.reports import InspectReport, PruneReport
