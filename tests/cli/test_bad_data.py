"""Bad data, run as a user would (the rules of test_bad_inputs: the documented exit code, one
``error:`` line, no traceback, every input byte-identical, nothing left behind), and the
output guard against every kind of data source for every command that reads data."""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxrecede.data.files import source_files
from tests.cli.test_bad_inputs import (
    SAMPLE,
    SAMPLE_IMP,
    Case,
    _assert_one_error_line,
    _invoke,
    _snapshot,
)
from tests.fixtures.hostile_files import cifar_dict, npy_header, png_header, write_cifar_batch


def _npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)


def _npy(a: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def _image_folder(root: Path, name: str, payload: bytes) -> None:
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / name).write_bytes(payload)
    (root / "b" / "ok.npy").write_bytes(_npy(np.zeros((32, 32, 3), np.uint8)))


@pytest.fixture
def data_work(tmp_path: Path) -> Path:
    shutil.copy(SAMPLE, tmp_path / "m.onnx")
    shutil.copy(SAMPLE_IMP, tmp_path / "imp.json")
    model = onnx.load(str(SAMPLE))
    for v in [*model.graph.input, *model.graph.output]:
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    del model.graph.value_info[:]
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 32, 32)).astype(np.float32)
    y = np.arange(6) % 10
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    x[3, 1, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=y)
    x[3, 1, 2, 2], x[4, 0, 0, 0] = 0, np.inf
    np.savez(tmp_path / "inf.npz", x=x, y=y)
    valid = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(valid[: len(valid) // 2])
    _npz(tmp_path / "member.npz", {"x.npy": _npy(x), "notes.txt": b"hello"})
    _npz(tmp_path / "huge.npz", {"x.npy": npy_header((10**13, 3, 32, 32)) + bytes(64)})
    _npz(tmp_path / "object.npz", {"x.npy": _npy(np.array([{}], dtype=object), True)})
    write_cifar_batch(tmp_path / "c_ok" / "test_batch", cifar_dict(4))
    bad = {"c_float": {b"labels": [1.0, 2.0, 3.0, 4.0]}, "c_short": {b"labels": [1, 2, 3]},
           "c_range": {b"labels": [1, 2, 3, 12]}}  # fmt: skip
    for folder, change in bad.items():
        for name in ("test_batch", "data_batch_1"):
            write_cifar_batch(tmp_path / folder / name, {**cifar_dict(4), **change})
    _image_folder(tmp_path / "i_bomb", "big.png", png_header(60000, 60000))
    _image_folder(tmp_path / "i_object", "x.npy", _npy(np.array([[1, 2]], dtype=object), True))
    _image_folder(tmp_path / "i_corrupt", "x.npy", _npy(np.zeros((32, 32, 3), np.uint8))[:-10])
    _image_folder(tmp_path / "i_png", "x.npy", png_header(32, 32))
    _image_folder(tmp_path / "i_nan", "x.npy", _npy(np.full((32, 32, 3), np.nan, np.float32)))
    return tmp_path


E = ("eval", "m.onnx", "--data")
R = ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx", "--reconstruct", "--calibration")
C = ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx", "--compensate", "--calibration")
A = ("importances", "m.onnx", "-o", "out.json", "-c", "activation", "--calibration")
T = ("train", "--out", "run", "--epochs", "1", "--data")
DATA_CASES = [
    Case("npz-member-not-npy", (*E, "member.npz"), 2, "member 'notes.txt' is not a .npy array"),
    Case("npz-truncated", (*E, "truncated.npz"), 2, "truncated.npz: cannot read it as a .npz"),
    Case("npz-huge-header", (*E, "huge.npz"), 2, "the header claims shape (10000000000000, 3"),
    Case("npz-object", (*R, "object.npz"), 2, "holds object values"),
    Case("npz-nan-eval", (*E, "nan.npz"), 2, "nan.npz: sample 3 (input 'input') holds NaN"),
    Case("npz-inf-eval", (*E, "inf.npz"), 2, "inf.npz: sample 4 (input 'input') holds NaN or inf"),
    Case("npz-nan-reconstruct", (*R, "nan.npz"), 2, "nan.npz: sample 3"),
    Case("npz-nan-compensate", (*C, "nan.npz"), 2, "nan.npz: sample 3"),
    Case("npz-nan-activation", (*A, "nan.npz"), 2, "nan.npz: sample 3"),
    Case("npz-nan-eval-data", ("prune", "m.onnx", "-i", "imp.json", "-o", "out.onnx",
                               "--eval-data", "inf.npz"), 2, "inf.npz: sample 4"),
    Case("shape-huge-prune", ("prune", "dyn.onnx", "-i", "imp.json", "-o", "out.onnx", "--shape",
                              "input:100000000x3x32x32"), 2, "would take 3.4 TiB, more than"),
    Case("shape-huge-bench", ("bench", "dyn.onnx", "--shape", "input:100000000x3x32x32"), 2,
         "random inputs of shape input:100000000x3x32x32 would take"),
    Case("bench-inputs-huge-header", ("bench", "m.onnx", "--inputs", "huge.npz"), 2,
         "huge.npz: member 'x.npy': the header claims"),
    Case("bench-inputs-not-npy", ("bench", "m.onnx", "--inputs", "member.npz"), 2,
         "member 'notes.txt' is not a .npy array"),
    Case("cifar-float-labels", (*E, "cifar10:c_float"), 2, "item 0 is a float"),
    Case("cifar-short-labels", (*R, "cifar10:c_short"), 2, "4 images but 3 'labels'"),
    Case("cifar-label-range", (*A, "cifar10:c_range"), 2, "label 12 of sample 3 is outside 0..9"),
    Case("png-bomb", (*E, "i_bomb"), 2, "big.png: Image size (3600000000 pixels) exceeds limit"),
    Case("npy-object-image", (*E, "i_object"), 2, "x.npy holds object values"),
    Case("npy-corrupt-image", (*R, "folder:i_corrupt"), 2, "x.npy: the header claims shape"),
    Case("npy-mislabelled-image", (*A, "i_png"), 2, "x.npy is not a readable .npy array"),
    Case("npy-nan-image", (*E, "i_nan"), 2, "x.npy: the image array holds NaN or infinity"),
    Case("std-nan", (*E, "cifar10:c_ok", "--std", "nan"), 2, "image std must be finite"),
    Case("std-inf", (*R, "cifar10:c_ok", "--std", "inf"), 2, "image std must be finite"),
    Case("mean-inf", (*A, "cifar10:c_ok", "--mean", "0,inf,0"), 2, "image mean must be finite"),
    Case("std-zero", (*E, "c_ok", "--std", "0"), 2, "std and scale must be greater than 0"),
    Case("std-negative", (*E, "cifar10:c_ok", "--std", "-1"), 2, "must be greater than 0"),
    Case("std-underflow", (*E, "cifar10:c_ok", "--std", "1e-300"), 2, "holds NaN or infinity"),
]  # fmt: skip
TRAIN_CASES = [
    Case("train-cifar-float-labels", (*T, "cifar10:c_float"), 2, "item 0 is a float"),
    Case("train-npy-object-image", (*T, "folder:i_object"), 2, "x.npy holds object values"),
    Case("train-png-bomb", (*T, "folder:i_bomb"), 2, "exceeds limit"),
]  # fmt: skip


def _check(work: Path, case: Case) -> None:
    before = _snapshot(work)
    result = _invoke(work, case.args)
    assert result.exit_code == case.code, (result.stdout, result.stderr)
    _assert_one_error_line(result.stderr, case.message)
    assert _snapshot(work) == before


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data(data_work: Path, case: Case) -> None:
    _check(data_work, case)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c.id for c in TRAIN_CASES])
def test_bad_training_data(data_work: Path, case: Case) -> None:
    pytest.importorskip("torch")
    _check(data_work, case)


# ----------------------------------------------------------------------------- the read set


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """One source of each kind, and a symlink to the digits file scikit-learn ships."""
    shutil.copy(SAMPLE, tmp_path / "m.onnx")
    shutil.copy(SAMPLE_IMP, tmp_path / "imp.json")
    x = np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x, y=np.arange(4))
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        (tmp_path / "imgs" / cls / "0.npy").write_bytes(_npy(np.zeros((32, 32, 3), np.uint8)))
    (tmp_path / "outside.npy").write_bytes(_npy(np.ones((32, 32, 3), np.uint8)))
    os.symlink(tmp_path / "outside.npy", tmp_path / "imgs" / "a" / "1.npy")
    for i in range(1, 6):
        write_cifar_batch(tmp_path / "c10" / f"data_batch_{i}", cifar_dict(4, seed=i))
    write_cifar_batch(tmp_path / "c10" / "test_batch", cifar_dict(4))
    for split in ("train", "test"):
        write_cifar_batch(tmp_path / "c100" / split, cifar_dict(4, key="fine_labels"))
    digits = source_files("digits:test")
    if digits:
        os.symlink(digits[0], tmp_path / "digits_link")
    (tmp_path / "run").mkdir()
    return tmp_path


#: (data source, a path that source reads)
READS = [
    ("calib.npz", "calib.npz"),
    ("imgs", "imgs/a/new.onnx"),
    ("folder:imgs", "imgs/b/0.npy"),
    ("imgs", "outside.npy"),  # the target of a symlink inside the folder
    ("cifar10:c10", "c10/test_batch"),
    ("cifar10:c10:train", "c10/data_batch_3"),
    ("cifar100:c100", "c100/test"),
    ("digits:test", "digits_link"),
]
COMMANDS = {
    "prune-calibration": lambda src, out: ("prune", "m.onnx", "-i", "imp.json", "-o", out,
                                           "--reconstruct", "--calibration", src),
    "prune-eval-data": lambda src, out: ("prune", "m.onnx", "-i", "imp.json", "-o", "x.onnx",
                                         "--report", out, "--eval-data", src),
    "importances": lambda src, out: ("importances", "m.onnx", "-o", out, "-c", "activation",
                                     "--calibration", src),
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("source", "target"), READS, ids=[f"{s}->{t}" for s, t in READS])
def test_no_output_touches_a_data_file(sources: Path, command: str, source: str, target: str):
    if target == "digits_link" and not (sources / target).exists():
        pytest.skip("scikit-learn is not installed")
    _check(sources, Case("", COMMANDS[command](source, target), 2, "that onnxrecede reads"
                         if "new.onnx" not in target else "is inside the"))  # fmt: skip


TRAIN_READS = [("folder:imgs", "imgs/b/0.npy"), ("cifar10:c10", "c10/test_batch"),
               ("cifar10:c10", "c10/data_batch_5"), ("cifar100:c100", "c100/train"),
               ("digits", "digits_link")]  # fmt: skip


@pytest.mark.parametrize(("source", "target"), TRAIN_READS, ids=[s for s, _ in TRAIN_READS])
def test_no_training_output_touches_a_data_file(sources: Path, source: str, target: str):
    """``train --out RUN`` writes RUN/best.pt: here a symlink to a file the data source reads."""
    pytest.importorskip("torch")
    if target == "digits_link" and not (sources / target).exists():
        pytest.skip("scikit-learn is not installed")
    os.symlink(os.path.realpath(sources / target), sources / "run" / "best.pt")
    _check(sources, Case("", ("train", "--data", source, "--out", "run", "--epochs", "1"), 2,
                         "that onnxrecede reads"))  # fmt: skip


def test_source_files_name_exactly_what_is_read(sources: Path, monkeypatch) -> None:
    monkeypatch.chdir(sources)
    assert source_files("synthetic:100", training=True) == []
    assert source_files("synthetic", training=True) == []
    assert source_files("calib.npz") == [Path("calib.npz")]
    assert source_files("cifar10:c10") == [Path("c10/test_batch")]
    assert source_files("cifar10:c10", training=True) == [
        *(Path(f"c10/data_batch_{i}") for i in range(1, 6)),
        Path("c10/test_batch"),
    ]
    assert source_files("cifar100:c100:train") == [Path("c100/train")]
    assert source_files("imgs") == [Path("imgs"), Path("imgs/a/1.npy")]
    if (sources / "digits_link").exists():
        assert source_files("digits:val") == source_files("digits", training=True)
        assert source_files("digits:val")[0].name == "digits.csv.gz"


# ----------------------------------------------------------------------------- the Python API

API_CASES = [
    ("member.npz", "member 'notes.txt' is not a .npy array"),
    ("truncated.npz", "cannot read it as a .npz file"),
    ("huge.npz", "the header claims shape (10000000000000, 3, 32, 32)"),
    ("object.npz", "holds object values"),
    ("nan.npz", "nan.npz: sample 3 (input 'input') holds NaN"),
    ("cifar10:c_float", "item 0 is a float"),
    ("cifar10:c_short", "4 images but 3 'labels'"),
    ("i_bomb", "exceeds limit"),
    ("folder:i_object", "holds object values"),
    ("i_corrupt", "the header claims"),
    ("i_png", "is not a readable .npy array"),
    ("i_nan", "the image array holds NaN or infinity"),
]


@pytest.mark.parametrize(("source", "message"), API_CASES, ids=[s for s, _ in API_CASES])
def test_evaluate_raises_input_errors(data_work: Path, monkeypatch, source: str, message: str):
    from onnxrecede.errors import InputError
    from onnxrecede.runtime.evaluate import evaluate

    monkeypatch.chdir(data_work)
    with pytest.raises(InputError) as info:
        evaluate("m.onnx", source)
    assert message in str(info.value)


def test_api_options_and_shapes_raise_input_errors(data_work: Path, monkeypatch) -> None:
    from onnxrecede.api import prune_file
    from onnxrecede.data.sources import ImageOptions
    from onnxrecede.errors import InputError
    from onnxrecede.runtime.evaluate import evaluate

    monkeypatch.chdir(data_work)
    for bad in (ImageOptions(std=(float("nan"),)), ImageOptions(mean=(float("inf"),)),
                ImageOptions(std=(0.0,)), ImageOptions(scale=float("nan"))):  # fmt: skip
        with pytest.raises(InputError, match="image (std|mean|scale)"):
            evaluate("m.onnx", "cifar10:c_ok", image=bad)
    with pytest.raises(InputError, match="random inputs of shape input:100000000x3x32x32 would"):
        prune_file("dyn.onnx", "imp.json", "out.onnx", input_shapes={"input": (10**8, 3, 32, 32)})
    assert not (data_work / "out.onnx").exists()


def test_training_loader_raises_input_errors(data_work: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from onnxrecede.errors import InputError
    from onnxrecede.train.data import load_data

    monkeypatch.chdir(data_work)
    for source, message in (("cifar10:c_float", "item 0 is a float"),
                            ("cifar10:c_range", "label 12 of sample 3 is outside 0..9"),
                            ("folder:i_corrupt", "the header claims"),
                            ("folder:i_bomb", "exceeds limit")):  # fmt: skip
        with pytest.raises(InputError, match=re.escape(message)):
            load_data(source)
