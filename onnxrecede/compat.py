"""Old module paths (before the package was split into subpackages), kept for one release.

1. A moved module (``onnxrecede.criteria`` -> ``onnxrecede.importance.criteria``): importing the
   old path gives a small shim module that forwards every attribute to the new module and warns
   once (``DeprecationWarning``, pointing at the importing line). The shims are made by an import
   hook, not files, so that the old files' history follows the moves.
2. An old module whose path is now a package (``onnxrecede.runtime``, ``onnxrecede.data``,
   ``onnxrecede.repair``): the package's ``__getattr__`` forwards the old module's names to
   their new module and warns (see :func:`forward_names`).

To be removed in the release after 0.1.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

#: old module -> new module (case 1)
MOVED: dict[str, str] = {
    "onnxrecede._io": "onnxrecede.io.outputs",
    "onnxrecede.model_io": "onnxrecede.io.model_files",
    "onnxrecede.streamio": "onnxrecede.io.stream",
    "onnxrecede.paths": "onnxrecede.io.paths",
    "onnxrecede.engine.targets": "onnxrecede.policy.targets",
    "onnxrecede.speedup_search": "onnxrecede.policy.speedup",
    "onnxrecede.importances": "onnxrecede.importance.file_format",
    "onnxrecede.criteria": "onnxrecede.importance.criteria",
    "onnxrecede.probe_importances": "onnxrecede.importance.activation",
    "onnxrecede.consumers": "onnxrecede.repair.consumers",
    "onnxrecede.compensate": "onnxrecede.repair.compensate",
    "onnxrecede.reconstruct": "onnxrecede.repair.reconstruct",
    "onnxrecede.probe": "onnxrecede.runtime.probe",
    "onnxrecede.evaluate": "onnxrecede.runtime.evaluate",
    "onnxrecede.digits": "onnxrecede.data.digits",
    "onnxrecede.reports": "onnxrecede.report.reports",
    "onnxrecede.plot": "onnxrecede.report.plot",
    "onnxrecede.cost": "onnxrecede.engine.cost",
}

#: old module now a package -> the module that holds its old contents (case 2)
BECAME_PACKAGE: dict[str, str] = {
    "onnxrecede.repair": "onnxrecede.repair.steps",
    "onnxrecede.runtime": "onnxrecede.runtime.session",
    "onnxrecede.data": "onnxrecede.data.sources",
}


def _internal(filename: str) -> bool:
    return "importlib" in filename and "_bootstrap" in filename


def _warn(old: str, new: str) -> None:
    """Warn at the first frame outside this module and the import machinery."""
    frame = sys._getframe(1)
    level = 2  # warnings.warn does not count the import machinery's frames
    while frame.f_back is not None and (
        frame.f_code.co_filename == __file__ or _internal(frame.f_code.co_filename)
    ):
        if not _internal(frame.f_code.co_filename):
            level += 1
        frame = frame.f_back
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; import from {new}",
        DeprecationWarning,
        stacklevel=level,
    )


def _public(module: ModuleType) -> list[str]:
    return [name for name in vars(module) if not name.startswith("_")]


class _ShimLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        target = importlib.import_module(self.new)
        module.__doc__ = f"Deprecated alias of :mod:`{self.new}`."
        module.__all__ = _public(target)  # type: ignore[attr-defined]

        def __getattr__(name: str) -> Any:
            return getattr(target, name)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        _warn(module.__name__, self.new)


class _ShimFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _ShimLoader(new))


def install() -> None:
    """Make the old module paths importable (idempotent)."""
    if not any(isinstance(f, _ShimFinder) for f in sys.meta_path):
        sys.meta_path.append(_ShimFinder())


def forward_names(package: str) -> Callable[[str], Any]:
    """``__getattr__`` for a package that replaced a module of the same path (case 2)."""
    new = BECAME_PACKAGE[package]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(new)
        if name.startswith("_") or not hasattr(target, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", new)
        return getattr(target, name)

    return __getattr__
