"""onnxrecede: structured channel pruning of ONNX models.

The engine works on the exported graph alone: no training code and no torch are needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from onnxrecede.errors import (
    AccuracyDropError,
    ImportancesError,
    InputError,
    OnnxRecedeError,
    RuntimeUnavailableError,
    VerificationError,
)
from onnxrecede.importances import Importances, load_importances, save_importances

__all__ = [
    "AccuracyDropError",
    "ImportancesError",
    "Importances",
    "InputError",
    "OnnxRecedeError",
    "RuntimeUnavailableError",
    "VerificationError",
    "__version__",
    "load_importances",
    "save_importances",
]

from onnxrecede.api import inspect, prune  # noqa: E402
from onnxrecede.cost import Cost, count_cost  # noqa: E402
from onnxrecede.data import ImageOptions, Samples, open_samples  # noqa: E402
from onnxrecede.model_io import load_model, save_model  # noqa: E402
from onnxrecede.repair import RepairOptions  # noqa: E402
from onnxrecede.reports import InspectReport, PruneReport  # noqa: E402

__all__ += [
    "Cost",
    "ImageOptions",
    "RepairOptions",
    "Samples",
    "open_samples",
    "InspectReport",
    "PruneReport",
    "count_cost",
    "inspect",
    "load_model",
    "prune",
    "save_model",
]
