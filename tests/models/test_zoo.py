"""The test models themselves: exports match torch, handmade models are valid and runnable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from tests.models.export import EXPORTERS, MAX_IR_VERSION
from tests.models.handmade import HANDMADE, INPUT_SHAPE
from tests.models.importances import make_random_importances
from tests.models.zoo import ZOO

ATOL = 1e-4
FAST_DYNAMO = ("resnet_basic", "unet_decoder")
KEEPS_BN = {"dynamo": False, "dynamo_noopt": True, "torchscript": False, "torchscript_bn": True}


def _input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def _run(model: Path | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _op_types(model: onnx.ModelProto) -> set[str]:
    return {node.op_type for node in model.graph.node}


def _bn_modules(module: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def _check_export(zoo_path: Callable[[str, str], Path], name: str, exporter: str) -> None:
    entry = ZOO[name]
    module = entry.build()
    path = zoo_path(name, exporter)
    model = onnx.load(str(path), load_external_data=False)

    assert [p.name for p in path.parent.glob(f"{path.name}*")] == [path.name]
    assert all(init.data_location == onnx.TensorProto.DEFAULT for init in model.graph.initializer)
    assert model.ir_version <= MAX_IR_VERSION
    onnx.checker.check_model(model, full_check=True)

    n_bn = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
    assert n_bn == (_bn_modules(module) if KEEPS_BN[exporter] else 0)
    assert entry.expect.barrier_ops <= _op_types(model)

    x = _input(entry.input_shape)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(path, x), expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- zoo


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_torchscript_matches_torch(zoo_path, name: str) -> None:
    _check_export(zoo_path, name, "torchscript")


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", FAST_DYNAMO)
def test_zoo_fast_subset_all_exporters(zoo_path, name: str, exporter: str) -> None:
    _check_export(zoo_path, name, exporter)


@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_full_matrix(zoo_path, name: str, exporter: str) -> None:
    _check_export(zoo_path, name, exporter)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_build_is_deterministic(name: str) -> None:
    a, b = ZOO[name].build().state_dict(), ZOO[name].build().state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_bn_stats_are_not_trivial(name: str) -> None:
    for m in ZOO[name].build().modules():
        if isinstance(m, nn.BatchNorm2d):
            assert not m.training
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
            assert not torch.allclose(m.running_mean, torch.zeros_like(m.running_mean))


def test_zoo_sizes_are_small() -> None:
    for name, entry in ZOO.items():
        params = sum(p.numel() for p in entry.build().parameters())
        assert 1_000 <= params <= 100_000, f"{name}: {params} parameters"


def test_zoo_unknown_exporter_is_rejected(tmp_path: Path) -> None:
    from tests.models.export import export_model

    with pytest.raises(ValueError, match="unknown exporter"):
        export_model(nn.Conv2d(3, 4, 1), (1, 3, 4, 4), tmp_path / "m.onnx", "bogus")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- handmade


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_handmade_is_valid_and_runs(name: str) -> None:
    model = HANDMADE[name].build()
    assert model.ir_version == 10
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert name.startswith("keras_") or tuple(dims) == INPUT_SHAPE  # keras_*: NHWC, symbolic batch
    y = _run(model, _input(tuple(dims)))
    assert y.shape == (1, 10)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_handmade_build_is_deterministic_and_has_its_barrier(name: str) -> None:
    entry = HANDMADE[name]
    model = entry.build()
    assert model.SerializeToString() == entry.build().SerializeToString()
    assert entry.expect.barrier_ops <= _op_types(model)
    names = [node.name for node in model.graph.node]
    assert all(names) and len(names) == len(set(names))


def test_handmade_custom_op_is_a_local_function() -> None:
    model = HANDMADE["custom_op"].build()
    node = next(n for n in model.graph.node if n.op_type == "Mystery")
    assert node.domain == "com.example"
    assert [(f.domain, f.name) for f in model.functions] == [("com.example", "Mystery")]


# ----------------------------------------------------------------------------- importances


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gemm_transb0", {"conv_a": 8, "fc1": 16, "fc2": 10}),
        ("gemm_transb1", {"conv_a": 8, "fc1": 16, "fc2": 10}),
        ("matmul_2d", {"conv_a": 8, "mm1": 16, "mm2": 10}),
        ("channels_last_matmul", {"conv_a": 8, "mlp_fc1": 12, "mlp_fc2": 8, "conv_b": 8, "fc": 10}),
        ("grouped_conv", {"conv_a": 8, "conv_g": 8, "conv_b": 8, "fc": 10}),
    ],
)
def test_random_importances_handmade(handmade_path, name: str, expected: dict[str, int]) -> None:
    scores = make_random_importances(handmade_path(name), seed=3)
    assert {k: len(v) for k, v in scores.items()} == expected
    assert all(0.0 <= s < 1.0 for v in scores.values() for s in v)
    assert scores == make_random_importances(handmade_path(name), seed=3)
    assert scores != make_random_importances(handmade_path(name), seed=4)


def test_random_importances_conv_transpose(zoo_path) -> None:
    path = zoo_path("unet_decoder", "torchscript")
    model = onnx.load(str(path))
    scores = make_random_importances(path, seed=0)
    (deconv,) = [n.name for n in model.graph.node if n.op_type == "ConvTranspose"]
    assert len(scores[deconv]) == 8
    assert sorted(len(v) for v in scores.values()) == [2, 8, 8, 8, 16, 16, 16]
