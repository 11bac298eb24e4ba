"""prune_file: prune straight to a file, verified from the file written; low-memory model I/O."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

import onnxrecede
from onnxrecede import api
from onnxrecede.errors import VerificationError
from onnxrecede.io import stream as streamio
from onnxrecede.io.model_files import load_model
from tests.models import large_activations

pytest.importorskip("onnxruntime")


@pytest.fixture
def lazy_io(monkeypatch):
    """Read and write small test models the way large ones are (lazily, streamed)."""
    monkeypatch.setattr(streamio, "LAZY_MIN_FILE_BYTES", 0)
    monkeypatch.setattr(streamio, "LAZY_MIN_BYTES", 256)


@pytest.fixture
def model(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return large_activations.write(folder)


def _arrays(m: ir.Model) -> dict[str, np.ndarray]:
    return {k: np.array(v.const_value.numpy()) for k, v in m.graph.initializers.items()}


def _assert_same_weights(a: ir.Model, b: ir.Model) -> None:
    x, y = _arrays(a), _arrays(b)
    assert list(x) == list(y)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.mark.parametrize("external", [False, True])
def test_prune_file_writes_the_verified_model(model, tmp_path, lazy_io, external):
    imp = large_activations.importances()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "pruned.onnx"
    report = api.prune_file(model, imp, out, external_data=external, ratio=0.5)
    assert report.output == os.fspath(out)
    assert report.verification is not None and report.verification["masked_reference"] == "passed"
    expected = {"pruned.onnx", "pruned.onnx.data"} if external else {"pruned.onnx"}
    assert {p.name for p in out_dir.iterdir()} == expected  # no scratch folder left
    onnx.checker.check_model(str(out), full_check=True)
    in_memory, same_report = onnxrecede.prune(model, imp, ratio=0.5, verify=False)
    _assert_same_weights(load_model(out), in_memory)
    assert report.removed_channels == same_report.removed_channels


def test_prune_file_without_verification(model, tmp_path):
    out = tmp_path / "p.onnx"
    report = api.prune_file(model, large_activations.importances(), out, verify=False)
    assert report.verification is None and out.is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"in", "p.onnx"}


@pytest.mark.parametrize("mapped", [False, True])
def test_a_file_corrupted_after_writing_fails_and_leaves_nothing(
    model, tmp_path, monkeypatch, mapped
):
    """Verification reads the file written, not the model in memory (also through the view
    that maps its large weights)."""
    if mapped:
        monkeypatch.setattr(streamio, "LAZY_MIN_BYTES", 256)
    write = api.write_model_files

    def write_then_corrupt(m, path, external_data):
        written = write(m, path, external_data)
        proto = onnx.load(str(path))
        t = next(t for t in proto.graph.initializer if t.name == "conv2.weight")
        w = numpy_helper.to_array(t).copy()
        w[0, 0] += 1.0  # a kept input channel of the last conv now weighs differently
        t.CopyFrom(numpy_helper.from_array(w, t.name))
        onnx.save(proto, str(path))
        return written

    monkeypatch.setattr(api, "write_model_files", write_then_corrupt)
    out = tmp_path / "p.onnx"
    out.write_bytes(b"previous output")
    with pytest.raises(VerificationError, match="masked reference"):
        api.prune_file(model, large_activations.importances(), out)
    assert out.read_bytes() == b"previous output"  # not replaced
    assert not (tmp_path / "p.onnx.data").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"in", "p.onnx"}


def test_a_failure_leaves_nothing_at_the_output(model, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise VerificationError("pruned model differs from the masked reference")

    monkeypatch.setattr(api, "run_verification", fail)
    out = tmp_path / "p.onnx"
    with pytest.raises(VerificationError):
        api.prune_file(model, large_activations.importances(), out, external_data=True)
    assert {p.name for p in tmp_path.iterdir()} == {"in"}


def test_lazy_load_reads_the_same_weights(model, lazy_io):
    lazy = streamio.load(model)
    plain = ir.load(model)
    assert any(isinstance(v.const_value, streamio.FileTensor) for v in lazy.graph.initializers.values())
    _assert_same_weights(lazy, plain)
    for name, value in lazy.graph.initializers.items():
        tensor = value.const_value
        assert tensor.tobytes() == plain.graph.initializers[name].const_value.tobytes()
        if isinstance(tensor, streamio.FileTensor) and tensor.shape[0] > 1:
            np.testing.assert_array_equal(streamio.read_rows(tensor, 1, 2), tensor.numpy()[1:2])


def test_streamed_inline_file_parses_to_the_same_model(model, tmp_path, lazy_io):
    m = streamio.load(model)
    m.graph.initializers["conv0.weight"].const_value = ir.Tensor(
        np.arange(16 * 4 * 9, dtype=np.float32).reshape(16, 4, 3, 3), name="conv0.weight"
    )  # an in-memory tensor among file-backed ones
    streamio.write_model(m, tmp_path / "streamed.onnx")
    ir.save(m, tmp_path / "plain.onnx")
    streamed = onnx.load(str(tmp_path / "streamed.onnx"))
    plain = onnx.load(str(tmp_path / "plain.onnx"))
    assert streamed == plain
    assert isinstance(m.graph.initializers["conv1.weight"].const_value, streamio.FileTensor)


def test_zeroed_tensor_blocks_match_the_whole(monkeypatch, tmp_path):
    monkeypatch.setattr(streamio, "BLOCK_BYTES", 64)  # many blocks
    source = ir.Tensor(np.arange(5 * 6 * 2, dtype=np.float32).reshape(5, 6, 2), name="w")
    zeroed = streamio.ZeroedTensor(source, [(0, "zero", (1, 4)), (1, "zero", (0, 5))], "w")
    whole = zeroed.numpy()
    assert (whole[[1, 4]] == 0).all() and (whole[:, [0, 5]] == 0).all()
    assert whole[0, 1, 0] == source.numpy()[0, 1, 0]
    with open(tmp_path / "z.bin", "wb") as f:
        zeroed.tofile(f)
    assert (tmp_path / "z.bin").read_bytes() == whole.tobytes()


def test_lazy_weights_survive_the_input_being_replaced(model, tmp_path, lazy_io):
    lazy = streamio.load(model)
    before = _arrays(ir.load(model))
    other = tmp_path / "other.onnx"
    onnx.save(large_activations.build(seed=5), str(other))
    os.replace(other, model)  # e.g. a pruned model saved over its input
    after = _arrays(lazy)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
