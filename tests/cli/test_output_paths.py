"""Outputs whose folders do not exist yet, outputs at symbolic links, and external-data models
read by the activation criterion: what does succeed, and how."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

from onnxrecede import api
from onnxrecede.errors import InputError

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(ROOT / "samples" / "resnet_small.onnx", tmp_path / "m.onnx")
    shutil.copy(ROOT / "samples" / "resnet_small.imp.json", tmp_path / "imp.json")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_missing_folders_are_created_when_the_work_succeeds(work: Path) -> None:
    r = _run("prune", "m.onnx", "-i", "imp.json", "-o", "a/b/out.onnx", "--report", "c/r.json",
             "-q")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert onnx.load("a/b/out.onnx").graph.node
    assert json.loads(Path("c/r.json").read_text())["channels"]["removed"] > 0
    assert sorted(p.name for p in work.iterdir()) == ["a", "c", "imp.json", "m.onnx"]
    assert not list(work.rglob(".onnxrecede-*"))


def test_api_prune_file_creates_folders_only_on_success(work: Path) -> None:
    with pytest.raises(InputError, match="conflicts with the model input"):
        api.prune_file("m.onnx", "imp.json", "x/y/out.onnx", input_shapes={"input": [2, 3, 32, 32]})
    assert not Path("x").exists() and not list(work.glob(".onnxrecede-*"))
    report = api.prune_file("m.onnx", "imp.json", "x/y/out.onnx", ratio=0.3)
    assert report.output == "x/y/out.onnx" and Path("x/y/out.onnx").is_file()


def test_link_to_an_existing_file_is_replaced_not_written_through(work: Path) -> None:
    Path("elsewhere").mkdir()
    Path("elsewhere/old.onnx").write_bytes(b"keep me")
    os.symlink("elsewhere/old.onnx", "out.onnx")
    r = _run("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx", "-q")
    assert r.exit_code == 0, r.stderr
    assert not os.path.islink("out.onnx") and onnx.load("out.onnx").graph.node
    assert Path("elsewhere/old.onnx").read_bytes() == b"keep me"


def test_dangling_link_is_refused_by_the_api_too(work: Path) -> None:
    os.symlink(work / "gone" / "out.onnx", "out.onnx")
    with pytest.raises(InputError, match="output out.onnx is a symbolic link to .*gone/out.onnx"):
        api.prune_file("m.onnx", "imp.json", "out.onnx")
    assert not Path("gone").exists() and os.path.islink("out.onnx")


def test_activation_importances_of_an_external_data_model(work: Path) -> None:
    """The external-data copy scores exactly as the model with its weights inline."""
    onnx.save(onnx.load("m.onnx"), "ext.onnx", save_as_external_data=True,
              location="ext.bin", size_threshold=0)  # fmt: skip
    x = np.random.default_rng(0).random((6, 3, 32, 32), dtype=np.float32)
    np.savez("calib.npz", input=x)
    scores = {}
    for name in ("m", "ext"):
        r = _run("importances", f"{name}.onnx", "-o", f"{name}.json", "-c", "activation",
                 "--calibration", "calib.npz")  # fmt: skip
        assert r.exit_code == 0, r.stderr
        scores[name] = json.loads(Path(f"{name}.json").read_text())["importances"]
    assert scores["ext"] == scores["m"] and len(scores["m"]) > 5
