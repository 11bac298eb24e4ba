"""Old module paths (before the subpackages) still import, warn once, and give the same objects."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from onnxrecede.compat import BECAME_PACKAGE, MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_moved_module_forwards_and_warns(old: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, old, raising=False)
    new = importlib.import_module(MOVED[old])
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*import from {MOVED[old]}"):
        shim = importlib.import_module(old)
    public = [n for n in vars(new) if not n.startswith("_")]
    assert public and sorted(shim.__all__) == sorted(public)
    for name in public:
        assert getattr(shim, name) is getattr(new, name)


@pytest.mark.parametrize("package", sorted(BECAME_PACKAGE))
def test_package_forwards_old_names_and_warns(package: str) -> None:
    pkg = importlib.import_module(package)
    new = importlib.import_module(BECAME_PACKAGE[package])
    public = [n for n in vars(new) if not n.startswith("_") and not hasattr(type(pkg), n)]
    for name in public:
        if name in vars(pkg):  # a submodule of the same name
            continue
        with pytest.warns(DeprecationWarning, match=f"{package}.{name} is deprecated"):
            assert getattr(pkg, name) is getattr(new, name)
    with pytest.raises(AttributeError):
        pkg.no_such_name  # noqa: B018


def test_warning_points_at_the_importing_line() -> None:
    code = "import warnings\nwarnings.simplefilter('error')\nfrom onnxrecede.criteria import compute_importances\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert 'File "<string>", line 3' in proc.stderr
    assert "DeprecationWarning: onnxrecede.criteria is deprecated" in proc.stderr


def test_new_paths_do_not_warn() -> None:
    code = (
        "import warnings\nwarnings.simplefilter('error')\n"
        "import onnxrecede, onnxrecede.api, onnxrecede.policy.speedup, onnxrecede.report.plot\n"
        "import onnxrecede_cli.main\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module("onnxrecede.importance.criteria")
