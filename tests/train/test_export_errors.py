"""`export` and the trainer's export options on bad input: one error line, exit 2 (143 for
SIGTERM), nothing written; the opset asked for is the opset written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnxrecede.errors import InputError  # noqa: E402
from onnxrecede.train.checkpoint import save_checkpoint  # noqa: E402
from onnxrecede.train.export import export_checkpoint, opset_range  # noqa: E402
from onnxrecede.train.models import build_model  # noqa: E402
from tests.cli.test_bad_inputs import _assert_one_error_line, _invoke, _snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARCH = {"model": "resnet20", "num_classes": 10, "width": 0.125, "bn": "standard"}


def _checkpoint(path: Path, arch: object = None, nan: bool = False) -> Path:
    model = build_model("resnet20", width=0.125)
    state = model.state_dict()
    if nan:
        state["conv1.weight"][0, 0, 0, 0] = float("nan")
    save_checkpoint(path, {"arch": ARCH if arch is None else arch, "model": state,
                           "method": "l1"})  # fmt: skip
    return path


@pytest.fixture
def ckpt_work(tmp_path: Path) -> Path:
    _checkpoint(tmp_path / "best.pt")
    _checkpoint(tmp_path / "nan.pt", nan=True)
    bad = {"no_arch": {}, "str_arch": "resnet20", "unknown_model": {**ARCH, "model": "gpt"},
           "classes": {**ARCH, "num_classes": "ten"}, "width_nan": {**ARCH, "width": float("nan")},
           "width_huge": {**ARCH, "width": 1e9}, "cut": {**ARCH, "cut": ["conv"]}}  # fmt: skip
    for name, arch in bad.items():
        _checkpoint(tmp_path / f"{name}.pt", arch=arch)
    # a checkpoint without 'arch' at all
    save_checkpoint(tmp_path / "missing.pt", {"model": {}})
    return tmp_path


X = ("export", "-o", "out.onnx", "--importances", "out.json")
CASES = [
    (("best.pt", "--opset", "1"), "--opset 1: the dynamo exporter writes opsets 18.."),
    (("best.pt", "--opset", "999"), "--opset 999: the dynamo exporter writes opsets 18.."),
    (("best.pt", "--opset", "6", "--exporter", "torchscript"), "the torchscript exporter writes"),
    (("missing.pt",), "missing.pt: 'arch' is NoneType, not a dict"),
    (("str_arch.pt",), "str_arch.pt: 'arch' is str, not a dict"),
    (("no_arch.pt",), "no_arch.pt: arch model None is not one of"),
    (("unknown_model.pt",), "arch model 'gpt' is not one of"),
    (("classes.pt",), "arch num_classes 'ten' is not an int >= 1"),
    (("width_nan.pt",), "arch width nan is not a number > 0"),
    (("width_huge.pt",), "width_huge.pt: the model (resnet20, width 1e+09)"),
    (("cut.pt",), "arch cut is not a dict of module path"),
    (("nan.pt",), "nan.pt: weight 'conv1.weight' holds NaN or infinity"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[a[0] + a[-1] for a, _ in CASES])
def test_export_bad_input(ckpt_work: Path, args: tuple[str, ...], message: str) -> None:
    before = _snapshot(ckpt_work)
    result = _invoke(ckpt_work, (X[0], args[0], *X[1:], *args[1:]))
    assert result.exit_code == 2, result.stderr
    _assert_one_error_line(result.stderr, message)
    assert _snapshot(ckpt_work) == before


def test_train_opset_is_refused_before_training(tmp_path: Path) -> None:
    result = _invoke(tmp_path, ("train", "--opset", "1", "--out", "run", "--epochs", "1"))
    assert result.exit_code == 2
    _assert_one_error_line(result.stderr, "--opset 1: the dynamo exporter writes opsets 18..")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("exporter", "opset"), [("dynamo", 19), ("torchscript", 13)])
def test_the_opset_asked_for_is_written(tmp_path: Path, exporter: str, opset: int) -> None:
    low, high = opset_range(exporter)  # type: ignore[arg-type]
    assert low <= opset <= high
    ckpt = _checkpoint(tmp_path / "best.pt")
    export_checkpoint(ckpt, tmp_path / "m.onnx", tmp_path / "i.json", exporter=exporter,  # type: ignore[arg-type]
                      opset=opset)  # fmt: skip
    written = onnx.load(str(tmp_path / "m.onnx")).opset_import
    assert [o.version for o in written if o.domain in ("", "ai.onnx")] == [opset]


def test_a_converter_that_falls_back_is_refused(tmp_path: Path, monkeypatch) -> None:
    """An exporter that writes another opset than asked (as dynamo did for 1..17) is an error."""
    real = torch.onnx.export

    def fallback(*args, **kwargs):
        kwargs["opset_version"] = 18
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", fallback)
    with pytest.raises(InputError, match="wrote opset 18 when asked for 20; it writes opsets 18"):
        export_checkpoint(_checkpoint(tmp_path / "best.pt"), tmp_path / "m.onnx",
                          tmp_path / "i.json", opset=20)  # fmt: skip
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "i.json").exists()


def test_an_interrupt_wrapped_by_the_exporter_gets_through(tmp_path: Path, monkeypatch) -> None:
    """The dynamo exporter catches what interrupts it and raises its own error from it."""

    def wrapping(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export") from e

    monkeypatch.setattr(torch.onnx, "export", wrapping)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(
            _checkpoint(tmp_path / "best.pt"), tmp_path / "m.onnx", tmp_path / "i.json"
        )
    monkeypatch.setattr(
        torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(ValueError("x"))
    )
    with pytest.raises(InputError, match="the dynamo exporter failed: ValueError: x"):
        export_checkpoint(tmp_path / "best.pt", tmp_path / "m.onnx", tmp_path / "i.json")


SITECUSTOMIZE = """
import os, signal
import torch

_export = torch.onnx.export

def export(*args, **kwargs):
    # worse than the dynamo exporter does with what interrupts it: catch it, then fail with an
    # error of its own that does not even chain the interrupt
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        return _export(*args, **kwargs)
    except BaseException:
        pass
    raise RuntimeError("Failed to export the model with torch.export")

torch.onnx.export = export
"""


def test_sigterm_during_the_dynamo_export_exits_143(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    work = tmp_path / "w"
    work.mkdir()
    _checkpoint(work / "best.pt")
    before = _snapshot(work)
    proc = subprocess.run(
        [sys.executable, "-m", "onnxrecede_cli.main", "export", "best.pt", *X[1:]],
        cwd=work, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])},
    )  # fmt: skip
    assert proc.returncode == 143, proc.stderr
    _assert_one_error_line(proc.stderr, "terminated (SIGTERM)")
    assert _snapshot(work) == before
