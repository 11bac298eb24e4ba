"""onnxrecede: structured channel pruning of ONNX models.

The engine works on the exported graph alone: no training code and no torch are needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from onnxrecede.errors import (
    ImportancesError,
    InputError,
    OnnxRecedeError,
    RuntimeUnavailableError,
    VerificationError,
)
from onnxrecede.importances import Importances, load_importances, save_importances

__all__ = [
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
