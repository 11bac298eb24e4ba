"""The CIFAR batch reader: real batches of every pickle protocol read back exactly; crafted and
damaged batches give one InputError (exit 2), never a crash, never a numpy object built from
the file (onnxrecede.data.cifar_pickle)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxrecede.data.sources import cifar_arrays, open_samples
from onnxrecede.errors import InputError
from tests.fixtures.hostile_files import (
    cifar_dict,
    python2_cifar_batch,
    v8_attack,
    write_cifar_batch,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_real_batches_of_every_protocol_read_back_exactly(tmp_path: Path, protocol: int) -> None:
    batch = cifar_dict(7, seed=protocol)
    path = write_cifar_batch(tmp_path / "test_batch", batch, protocol)
    x, y = cifar_arrays(path, "labels", 10)
    np.testing.assert_array_equal(x, np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(y, batch[b"labels"])
    assert x.flags.writeable and y.dtype == np.int64


def test_python2_batch_and_cifar100_keys(tmp_path: Path) -> None:
    x = np.random.default_rng(3).integers(0, 256, (4, 3072), dtype=np.uint8)
    (tmp_path / "test_batch").write_bytes(python2_cifar_batch(x, [9, 0, 3, 3]))
    got, y = cifar_arrays(tmp_path / "test_batch", "labels", 10)
    np.testing.assert_array_equal(got.reshape(4, -1), x)
    assert y.tolist() == [9, 0, 3, 3]
    batch = cifar_dict(5, key="fine_labels")
    batch[b"coarse_labels"] = [1] * 5
    write_cifar_batch(tmp_path / "c100" / "test", batch)
    samples = open_samples(f"cifar100:{tmp_path / 'c100'}", ["input"])
    assert samples.labels is not None and samples.labels.tolist() == batch[b"fine_labels"]


def _batch_with(**changes: object) -> dict[bytes, object]:
    batch = cifar_dict(4)
    batch.update({k.encode(): v for k, v in changes.items()})
    return batch


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (_batch_with(labels=[1.0, 2.0, 3.0, 4.0]), r"'labels' must be a list of integers; item 0 is a float"),
        (_batch_with(labels=["1", "2", "3", "4"]), r"'labels' must be a list of integers; item 0 is a str"),
        (_batch_with(labels=[1, 2, 3]), r"4 images but 3 'labels'"),
        (_batch_with(labels=[1, 2, 3, 10]), r"label 10 of sample 3 is outside 0..9"),
        (_batch_with(labels=[1, 2, 3, -1]), r"label -1 of sample 3 is outside 0..9"),
        (_batch_with(data=np.zeros((4, 3072), np.int16)), r"'data' must be an N x 3072 uint8 array, got int16"),
        (_batch_with(data=np.zeros((4, 3000), np.uint8)), r"got uint8 of shape \(4, 3000\)"),
        (_batch_with(data=np.zeros((4, 3072), np.float32)), r"dtype 'f4' is refused"),
        (_batch_with(data=np.zeros(4, dtype=object)), r"dtype 'O8' is refused"),
        (_batch_with(data=np.zeros(4, dtype="V8")), r"dtype 'V8' is refused"),
        (_batch_with(data=np.zeros(2, dtype=[("a", "u1")])), r"dtype 'V1' is refused"),
        (_batch_with(data=[[0] * 3072] * 4), r"'data' must be an N x 3072 uint8 array, got list"),
        (_batch_with(data=os.system), r"refusing to load (posix|os)\.system"),
        ({b"labels": [1]}, r"expected keys 'data' and 'labels'"),
    ],
    ids=["float-labels", "str-labels", "short-labels", "label-too-big", "label-negative",
         "int16-data", "wrong-width", "float-data", "object-array", "void-array",
         "structured-array", "list-data", "global", "no-data"],
)  # fmt: skip
def test_bad_batches_are_one_input_error(tmp_path: Path, batch: dict, message: str) -> None:
    path = write_cifar_batch(tmp_path / "test_batch", batch)
    with pytest.raises(InputError, match=message) as info:
        cifar_arrays(path, "labels", 10)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (v8_attack(), r"dtype 'V8' is refused"),
        (pickle.dumps([1, 2]), r"holds a list, not a dict"),
        (pickle.dumps({b"data": {1, 2}}), r"opcode .* is refused"),
        (b"", r"ends before the pickle's STOP"),
        (b"\x80\x02}q\x01(", r"ends before the pickle's STOP"),
        (b"\x80\x02h\x05.", r"memo entry 5, which was never stored"),
        (b"\x80\x02}X\x01\x00\x00\x00acnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87Rs.", r"dtype or a global is stored"),
        (b"\x80\x02(u.", r"SETITEMS|needs a dict"),
        (b"\x80\x02}X\x04\x00\x00\x00dataC\x01bsX\x06\x00\x00\x00labels]s.", r"'data' must be an N x 3072"),
    ],
    ids=["v8-attack", "list", "set", "empty", "truncated", "bad-memo", "bare-dtype",
         "setitems-without-dict", "bytes-data"],
)  # fmt: skip
def test_crafted_pickles_are_refused(tmp_path: Path, payload: bytes, message: str) -> None:
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(InputError, match=message):
        cifar_arrays(tmp_path / "test_batch", "labels", 10)


def test_v8_attack_is_exit_2_in_a_fresh_process(tmp_path: Path) -> None:
    """The crafted batch of issue 14 segfaulted every command that read it (exit 139); run in a
    subprocess so that a crash fails this test instead of killing pytest."""
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "test_batch").write_bytes(v8_attack())
    model = ROOT / "samples" / "resnet_small.onnx"
    for args in (["eval", str(model), "--data", "cifar10:cifar"],
                 ["importances", str(model), "-o", "imp.json", "-c", "activation",
                  "--calibration", "cifar10:cifar"]):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "onnxrecede_cli.main", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert lines[-1].startswith("error: cifar/test_batch is not a CIFAR"), proc.stderr
        assert "dtype 'V8' is refused" in lines[-1] and "Traceback" not in proc.stderr
    assert not (tmp_path / "imp.json").exists()


# ----------------------------------------------------------------------------- fuzzing

_VALID = pickle.dumps(cifar_dict(3, seed=5), protocol=2)
_VALID_PY2 = python2_cifar_batch(
    np.arange(3 * 3072, dtype=np.int64).astype(np.uint8).reshape(3, -1), [0, 1, 2]
)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(payload: bytes) -> None:
    """Read ``payload`` as a batch: an InputError or a consistent batch, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "test_batch"
        path.write_bytes(payload)
        try:
            x, y = cifar_arrays(path, "labels", 10)
        except InputError as e:
            assert str(path) in str(e)
            return
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 32, 32)
    assert y.dtype == np.int64 and len(y) == len(x) and ((y >= 0) & (y < 10)).all()


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(payload: bytes) -> None:
    _read(payload)


@_FUZZ
@given(st.sampled_from([_VALID, _VALID_PY2]), st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "insert", "cut"])),
    min_size=1, max_size=6))  # fmt: skip
def test_fuzz_mutated_batches(base: bytes, edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(base)
    head = 400  # mutate mostly the structure, not the pixel bytes
    for where, value, how in edits:
        i = where % min(len(data) or 1, head) if where % 3 else where % (len(data) or 1)
        if how == "set" and data:
            data[i] = value
        elif how == "insert":
            data[i:i] = bytes([value])
        else:
            del data[i:]
    _read(bytes(data))
