"""onnxrecede: structured channel pruning of ONNX models.

The engine works on the exported graph alone: no training code and no torch are needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from onnxrecede import _deprecated
from onnxrecede.errors import (
    AccuracyDropError,
    ImportancesError,
    InputError,
    OnnxRecedeError,
    RuntimeUnavailableError,
    VerificationError,
)
from onnxrecede.importance.file_format import Importances, load_importances, save_importances

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
from onnxrecede.data.sources import ImageOptions, Samples, open_samples  # noqa: E402
from onnxrecede.engine.cost import Cost, count_cost  # noqa: E402
from onnxrecede.io.model_files import load_model, save_model  # noqa: E402
from onnxrecede.repair.steps import RepairOptions  # noqa: E402
from onnxrecede.report.reports import InspectReport, PruneReport  # noqa: E402

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

# Old module paths (before the subpackages) keep working for one release, with a warning.
_deprecated.install()
