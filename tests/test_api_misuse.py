"""The Python API refuses what the command line refuses, with OnnxRecedeError subclasses.

Output safety (``prune_file`` never writes over one of its inputs) and argument checks shared
with the command line (``onnxrecede.checks``): each case asserts the exception type, its
message, and that every input is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import onnx
import pytest

from onnxrecede import api
from onnxrecede.errors import ImportancesError, InputError
from onnxrecede.repair.steps import RepairOptions
from onnxrecede.runtime.evaluate import evaluate

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "samples" / "resnet_small.onnx", tmp_path / "conv.onnx")
    shutil.copy(ROOT / "samples" / "resnet_small.imp.json", tmp_path / "imp.json")
    model = onnx.load(str(tmp_path / "conv.onnx"))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=0)  # fmt: skip
    os.symlink(tmp_path / "conv.onnx", tmp_path / "link.onnx")
    return tmp_path


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize(
    ("model", "output", "message"),
    [
        ("conv.onnx", "conv.onnx", "output conv.onnx is the model conv.onnx that onnxrecede reads"),
        ("conv.onnx", "imp.json", "output imp.json is the importances imp.json"),
        ("conv.onnx", "link.onnx", "output link.onnx is the model conv.onnx"),
        ("ext.onnx", "weights.bin", "output weights.bin is the external data of the model"),
        ("ext.onnx", "weights", "the external data of output weights.data"),
    ],
)
def test_prune_file_never_overwrites_an_input(work, monkeypatch, model, output, message):
    monkeypatch.chdir(work)
    if output == "weights":  # output.data would be the model's external data
        os.remove("weights.bin")
        onnx.save(onnx.load("conv.onnx"), "ext.onnx", save_as_external_data=True,
                  location="weights.data", size_threshold=0)  # fmt: skip
    before = _hashes(work)
    with pytest.raises(InputError, match=message) as info:
        api.prune_file(model, "imp.json", output, ratio=0.3)
    assert type(info.value) is InputError
    assert _hashes(work) == before
    assert not any(p.name.startswith(".onnxrecede-") for p in work.iterdir())


def test_prune_file_refuses_calibration_file_as_output(work, monkeypatch):
    monkeypatch.chdir(work)
    import numpy as np

    np.savez("calib.npz", input=np.zeros((2, 3, 32, 32), np.float32))
    before = _hashes(work)
    repair = RepairOptions(compensate=True, calibration="calib.npz")
    with pytest.raises(InputError, match="output calib.npz is the calibration data calib.npz"):
        api.prune_file("conv.onnx", "imp.json", "calib.npz", ratio=0.3, repair=repair)
    assert _hashes(work) == before


def test_prune_file_writes_a_distinct_output(work, monkeypatch):
    monkeypatch.chdir(work)
    before = _hashes(work)
    report = api.prune_file("conv.onnx", "imp.json", "out.onnx", ratio=0.3)
    assert report.output == "out.onnx" and report.channels_removed > 0
    after = _hashes(work)
    assert after.pop("out.onnx") and after == before


NAN = math.nan


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"round_to": 2.5}, r"round-to must be a whole number, got 2.5"),
        ({"round_to": 0}, r"round-to must be at least 1, got 0"),
        ({"min_channels": True}, r"min-channels must be a whole number, got True"),
        ({"min_channels": "2"}, r"min-channels must be a whole number, got '2'"),
        ({"target_speedup": 1.5, "speedup_search": {"round": 3}},
         r"speedup_search has unknown keys 'round'; the known keys are rounds, seconds, threads"),
        ({"target_speedup": 1.5, "speedup_search": {"rounds": 1.5}},
         r"rounds \(--search-rounds\) must be a whole number, got 1.5"),
        ({"target_speedup": 1.5, "speedup_search": {"seconds": NAN}},
         r"seconds \(--search-seconds\): nan is not a finite number"),
        ({"target_speedup": math.inf}, r"--target-speedup: inf is not a finite number"),
        ({"input_shapes": {"input": [0, 3, 32, 32]}},
         r"bad shape \[0, 3, 32, 32\] for input 'input' .* whole number >= 1"),
        ({"input_shapes": {"input": [1, 3, 32.5, 32]}}, r"bad shape \[1, 3, 32.5, 32\]"),
        ({"input_shapes": {"input": "1x3x32x32"}}, r"bad shape '1x3x32x32'"),
        ({"repair": RepairOptions(compensate=True, ridge=NAN)},
         r"ridge term must be >= 0 \(--ridge\), got nan"),
        ({"repair": RepairOptions(compensate=True, ridge=-1.0)}, r"ridge term must be >= 0"),
        ({"repair": RepairOptions(compensate=True, batch_size=0)},
         r"--calibration-batch must be at least 1, got 0"),
        ({"repair": RepairOptions(compensate=True, limit=2.5)},
         r"--calibration-limit must be a whole number, got 2.5"),
        ({"repair": RepairOptions(reconstruct=True, calibration="digits:val", max_rows=0)},
         r"row cap \(--max-rows\) must be at least 1"),
    ],
)
def test_prune_misuse_raises_input_error(work, options, message):
    before = _hashes(work)
    with pytest.raises(InputError, match=message):
        api.prune(work / "conv.onnx", work / "imp.json", **options)
    assert _hashes(work) == before


def test_evaluate_batch_size_must_be_a_whole_number(work):
    with pytest.raises(InputError, match=r"batch_size must be at least 1, got 0"):
        evaluate(work / "conv.onnx", "digits:test", batch_size=0)
    with pytest.raises(InputError, match=r"batch_size must be a whole number, got 2.5"):
        evaluate(work / "conv.onnx", "digits:test", batch_size=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        '{"importances": {"caf\xe9": [1.0]}}'.encode("latin-1"),  # Latin-1, not UTF-8
        '{"importances": {"a": [1.0]}}'.encode("utf-16"),
        bytes(range(256)),
    ],
)
def test_non_utf8_importances_file(work, data):
    (work / "bad.json").write_bytes(data)
    with pytest.raises(ImportancesError, match=r"bad.json is not text \(binary data, or not UTF-8\)"):
        api.prune_file(work / "conv.onnx", work / "bad.json", work / "out.onnx")
    assert not (work / "out.onnx").exists()


def test_importances_mapping_with_bad_vector(work):
    with pytest.raises(ImportancesError, match="must be a non-empty list of numbers"):
        api.prune(work / "conv.onnx", {"importances": json.loads('{"x": "abc"}')})


def test_export_refuses_one_file_for_both_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    from onnxrecede.train.export import export_model

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    out = tmp_path / "m.onnx"
    with pytest.raises(InputError, match="importances_path .*m.onnx and onnx_path .* are the same"):
        export_model(net, out, out, {"1": torch.ones(4)})
    with pytest.raises(InputError, match="are the same file"):
        export_model(net, out, tmp_path / "m.onnx.data", {"1": torch.ones(4)})
    assert list(tmp_path.iterdir()) == []
