"""onnxrecede: structured channel pruning of ONNX models.

The engine works on the exported graph alone: no training code and no torch are needed.

The public names below are imported on first use (PEP 562), so that ``import onnxrecede``
(and with it ``onnxrecede --help``, ``--version`` and usage errors) does not load onnx, onnx-ir,
ONNX Runtime or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onnxrecede import compat
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
    "Importances": "onnxrecede.importance.file_format",
    "load_importances": "onnxrecede.importance.file_format",
    "save_importances": "onnxrecede.importance.file_format",
    "inspect": "onnxrecede.api",
    "prune": "onnxrecede.api",
    "Cost": "onnxrecede.engine.cost",
    "count_cost": "onnxrecede.engine.cost",
    "ImageOptions": "onnxrecede.data.sources",
    "Samples": "onnxrecede.data.sources",
    "open_samples": "onnxrecede.data.sources",
    "load_model": "onnxrecede.io.model_files",
    "save_model": "onnxrecede.io.model_files",
    "RepairOptions": "onnxrecede.repair.steps",
    "InspectReport": "onnxrecede.report.reports",
    "PruneReport": "onnxrecede.report.reports",
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
    from onnxrecede.data.sources import ImageOptions, Samples, open_samples
    from onnxrecede.engine.cost import Cost, count_cost
    from onnxrecede.importance.file_format import Importances, load_importances, save_importances
    from onnxrecede.io.model_files import load_model, save_model
    from onnxrecede.repair.steps import RepairOptions
    from onnxrecede.report.reports import InspectReport, PruneReport

# Old module paths (before the subpackages) keep working for one release, with a warning.
compat.install()
