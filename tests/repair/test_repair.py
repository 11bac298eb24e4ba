"""Bias compensation and least-squares reconstruction on small hand-built models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxrecede import api
from onnxrecede.errors import InputError, VerificationError
from onnxrecede.repair.compensate import Compensation
from onnxrecede.repair.consumers import conv_geometry
from onnxrecede.repair.reconstruct import conv_patches
from onnxrecede.repair.steps import NOT_RECONSTRUCTED, RECONSTRUCTED, RepairOptions
from onnxrecede.runtime.probe import Probe
from tests.models.handmade import HANDMADE
from tests.models.small import importances_removing, small_cnn


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(5).uniform(0, 1, (48, 3, 8, 8)).astype(np.float32)
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=x)
    return path, x


def _run(model, x: np.ndarray, name: str = "logits") -> np.ndarray:
    return Probe(model, [name], include_outputs=False).run({"input": x})[name]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- compensation


def test_graph_constant_channel_is_compensated_exactly(calib) -> None:
    _, x = calib
    model = small_cnn(kb=1, bn=True, zero_channel=2)  # bias-only channel -> BN -> Relu -> 1x1
    imp = importances_removing([2])
    want = _run(model, x)
    plain, _ = api.prune(model, imp, threshold=0.5)
    assert _rel(_run(plain, x), want) > 1e-2
    pruned, report = api.prune(model, imp, threshold=0.5, repair=RepairOptions(compensate=True))
    np.testing.assert_allclose(_run(pruned, x), want, rtol=1e-4, atol=1e-5)
    entry = report.repair["compensation"]["consumers"][0]  # type: ignore[index]
    assert (entry["node"], entry["source"], entry["compensated"]) == ("conv_b", "graph constant", 1)
    assert report.verification["masked_reference"] == "passed"  # type: ignore[index]


def test_without_data_only_constant_channels_are_compensated(caplog) -> None:
    model = small_cnn(kb=1)
    _, report = api.prune(
        model, importances_removing([1, 3]), threshold=0.5, repair=RepairOptions(compensate=True)
    )
    assert "nothing was compensated (give --calibration DATA" in caplog.text
    assert report.repair["compensation"]["consumers"] == []  # type: ignore[index]
    assert report.repair["compensation"]["skipped"] == [  # type: ignore[index]
        "Conv 'conv_b': no removed input is constant"
    ]


def test_data_compensation_keeps_the_consumer_mean(calib) -> None:
    path, x = calib
    model = small_cnn(kb=3)
    imp = importances_removing([1, 4, 6])
    want = _run(model, x, "b").mean(axis=(0, 2, 3))
    plain, _ = api.prune(model, imp, threshold=0.5)
    repair = RepairOptions(compensate=True, calibration=str(path))
    pruned, report = api.prune(model, imp, threshold=0.5, repair=repair)
    got = _run(pruned, x, "b").mean(axis=(0, 2, 3))
    # the mean over positions (zero padding included) is kept exactly
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(_run(plain, x, "b").mean(axis=(0, 2, 3)) - want).max() > 0.05
    assert _rel(_run(pruned, x), _run(model, x)) < _rel(_run(plain, x), _run(model, x))
    assert report.repair["calibration"]["samples"] == 48  # type: ignore[index]
    assert report.verification["masked_reference"] == "passed"  # type: ignore[index]


def test_verification_compares_against_the_compensated_reference(calib, monkeypatch) -> None:
    path, _ = calib
    original_apply = Compensation.apply

    def pruned_only(self, graph, node_map=None):  # leave the masked reference uncompensated
        if node_map is None:
            original_apply(self, graph)

    monkeypatch.setattr(Compensation, "apply", pruned_only)
    with pytest.raises(VerificationError, match="differs from the masked reference"):
        api.prune(
            small_cnn(),
            importances_removing([1, 4]),
            threshold=0.5,
            repair=RepairOptions(compensate=True, calibration=str(path)),
        )


def test_matmul_consumer_gets_an_add_for_its_bias(tmp_path: Path) -> None:
    model = HANDMADE["matmul_2d"].build()  # mm2 has no bias: an Add is inserted after it
    x = np.random.default_rng(1).uniform(0, 1, (10, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    imp = {"mm1": [0.0] * 6 + [1.0] * 10}
    for repair in (
        RepairOptions(compensate=True, calibration=str(tmp_path / "c.npz")),
        RepairOptions(reconstruct=True, calibration=str(tmp_path / "c.npz")),
    ):
        pruned, report = api.prune(model, imp, threshold=0.5, repair=repair)
        proto = onnx.ModelProto.FromString(
            __import__("onnx_ir").serde.serialize_model(pruned).SerializeToString()
        )
        adds = [n for n in proto.graph.node if n.op_type == "Add" and n.input[0].startswith("mm2")]
        assert len(adds) == 1
        assert [o.name for o in proto.graph.output] == ["output"]
        assert report.verification["ort_run"] == "passed"  # type: ignore[index]


# ----------------------------------------------------------------------------- reconstruction


def test_conv_patches_match_the_conv(calib) -> None:
    _, x = calib
    model = small_cnn()
    rng = np.random.default_rng(0)
    from onnx import helper, numpy_helper

    w = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    attrs = {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}
    node = helper.make_node("Conv", ["input", "w"], ["y"], name="c", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    conv = helper.make_model(graph, opset_imports=model.opset_import, ir_version=10)
    y = _run(conv, x, "y")
    import onnx_ir as ir

    ir_node = next(iter(ir.serde.deserialize_model(conv).graph))
    strides, dilations, pads = conv_geometry(ir_node, (3, 2))
    pos = tuple(rng.integers(0, d, 50) for d in (y.shape[0], y.shape[2], y.shape[3]))
    geometry = ((3, 2), tuple(strides), tuple(dilations), tuple(pads))
    rows = conv_patches(x, pos, geometry)  # type: ignore[arg-type]
    np.testing.assert_allclose(rows @ w.reshape(4, -1).T, y[pos[0], :, pos[1], pos[2]], atol=1e-4)


def test_reconstruction_recovers_a_redundant_channel(calib) -> None:
    path, x = calib
    model = small_cnn(duplicate=(0, 7))  # channel 7 is a copy of channel 0
    imp = importances_removing([7])
    plain, _ = api.prune(model, imp, threshold=0.5)
    assert _rel(_run(plain, x), _run(model, x)) > 1e-2
    repair = RepairOptions(reconstruct=True, calibration=str(path), ridge=0.0)
    pruned, report = api.prune(model, imp, threshold=0.5, repair=repair)
    np.testing.assert_allclose(_run(pruned, x), _run(model, x), rtol=1e-3, atol=1e-3)
    (entry,) = report.repair["reconstruction"]["consumers"]  # type: ignore[index]
    assert entry["node"] == "conv_b" and entry["applied"]
    assert entry["relative_error_before"] > 0.05 and entry["relative_error_after"] < 1e-4


def test_reconstruction_report_and_verification(calib) -> None:
    path, x = calib
    model = small_cnn(seed=3)
    repair = RepairOptions(reconstruct=True, calibration=str(path), batch_size=16)
    calls: list[tuple[str, int, int]] = []
    pruned, report = api.prune(
        model,
        importances_removing([0, 2, 5], [1, 3]),
        threshold=0.5,
        repair=repair,
        progress=lambda *call: calls.append(call),
    )
    layers = [c for c in calls if c[0].startswith("reconstruct")]
    assert layers[-1] == ("reconstruct 2/2 fc", 3, 3)  # one bar per layer, 48 samples / 16
    assert ("reconstruct 1/2 conv_b", 3, 3) in layers
    rec = report.repair["reconstruction"]  # type: ignore[index]
    assert [e["node"] for e in rec["consumers"]] == ["conv_b", "fc"]
    for e in rec["consumers"]:
        assert e["relative_error_after"] < e["relative_error_before"]
    # fc reads a global average pool: fitted on its input's 48 x 8 x 8 positions
    fc = rec["consumers"][-1]
    assert (fc["rows"], fc["rows_from"]) == (48 * 64, "pool input positions")
    plain, _ = api.prune(model, importances_removing([0, 2, 5], [1, 3]), threshold=0.5)
    assert _rel(_run(pruned, x), _run(model, x)) < 0.5 * _rel(_run(plain, x), _run(model, x))
    v = report.verification
    assert v is not None and v["masked_reference"] == RECONSTRUCTED
    assert (v["checker"], v["consistency"], v["ort_run"]) == ("passed", "passed", "passed")


def test_reconstruct_needs_calibration() -> None:
    with pytest.raises(InputError, match=r"--reconstruct needs calibration data"):
        api.prune(small_cnn(), importances_removing([1]), threshold=0.5,
                  repair=RepairOptions(reconstruct=True))  # fmt: skip
    with pytest.raises(InputError, match=r"ridge term must be >= 0"):
        RepairOptions(reconstruct=True, calibration="x.npz", ridge=-1).validate()


def test_graph_constant_with_padding_keeps_the_mean(calib) -> None:
    _, x = calib
    model = small_cnn(kb=3, bn=True, zero_channel=2)  # 3x3 consumer, zero padding
    pruned, _ = api.prune(
        model, importances_removing([2]), threshold=0.5, repair=RepairOptions(compensate=True)
    )
    want, got = _run(model, x, "b"), _run(pruned, x, "b")
    # the bias carries the mean over positions (taps reading padding included) exactly ...
    np.testing.assert_allclose(got.mean(axis=(0, 2, 3)), want.mean(axis=(0, 2, 3)), atol=1e-5)
    # ... but a bias cannot follow the padding: positions keep an error (the border error of
    # the taps that read padding, spread over the image by the mean)
    assert np.abs(got - want).max() > 1e-3


# ----------------------------------------------------------------------------- Constant weights


def _weights_in_constant_nodes(
    model: onnx.ModelProto, through_identity: str = ""
) -> onnx.ModelProto:
    """The model with every initializer moved into a Constant node (as paddle2onnx writes them);
    ``through_identity`` names one that goes through an Identity node."""
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    consts = []
    for init in out.graph.initializer:
        name = init.name
        if name == through_identity:
            consts.append(helper.make_node("Constant", [], [name + ".c"], value=init))
            consts.append(helper.make_node("Identity", [name + ".c"], [name]))
        else:
            consts.append(helper.make_node("Constant", [], [name], value=init))
    del out.graph.initializer[:]
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(consts + nodes)
    return out


def test_constant_node_weights_are_reconstructed_like_initializers(calib) -> None:
    path, x = calib
    model = small_cnn(seed=3)
    imp = importances_removing([0, 2, 5], [1, 3])
    repair = RepairOptions(reconstruct=True, calibration=str(path))
    want, want_report = api.prune(model, imp, threshold=0.5, repair=repair)
    constant = _weights_in_constant_nodes(model, through_identity="conv_b.weight")
    got, report = api.prune(constant, imp, threshold=0.5, repair=repair)
    rec = report.repair["reconstruction"]  # type: ignore[index]
    assert [(e["node"], e["applied"]) for e in rec["consumers"]] == [("conv_b", True), ("fc", True)]
    assert rec["skipped"] == [] and report.repair["consumers_not_repaired"] == []  # type: ignore[index]
    np.testing.assert_allclose(_run(got, x), _run(want, x), rtol=1e-4, atol=1e-5)
    assert report.verification["masked_reference"] == RECONSTRUCTED  # type: ignore[index]


def test_constant_node_weights_are_compensated(calib) -> None:
    path, x = calib
    model = small_cnn(kb=3)
    imp = importances_removing([1, 4, 6])
    repair = RepairOptions(compensate=True, calibration=str(path))
    want, _ = api.prune(model, imp, threshold=0.5, repair=repair)
    got, report = api.prune(_weights_in_constant_nodes(model), imp, threshold=0.5, repair=repair)
    assert [e["node"] for e in report.repair["compensation"]["consumers"]] == ["conv_b"]  # type: ignore[index]
    np.testing.assert_allclose(_run(got, x, "b"), _run(want, x, "b"), rtol=1e-4, atol=1e-5)


def test_a_consumer_left_unrepaired_is_a_warning(calib, caplog) -> None:
    path, _ = calib
    model = small_cnn(kb=3)
    conv_b = next(n for n in model.graph.node if n.name == "conv_b")
    del conv_b.attribute[:]
    conv_b.attribute.extend([onnx.helper.make_attribute("auto_pad", "SAME_UPPER")])
    repair = RepairOptions(reconstruct=True, calibration=str(path))
    _, report = api.prune(model, importances_removing([1, 4]), threshold=0.5, repair=repair)
    assert (
        "warning: 1 consumer(s) of removed channels were not repaired: Conv 'conv_b': "
        "auto_pad padding (see the report's repair section)" in caplog.text
    )
    assert report.repair["reconstruction"]["consumers"] == []  # type: ignore[index]
    assert report.verification["masked_reference"] == NOT_RECONSTRUCTED  # type: ignore[index]
    assert "weights refitted" not in str(report.verification)


# ----------------------------------------------------------------------------- repaired copies


@pytest.mark.parametrize("compensate,reconstruct", [(True, False), (False, True), (True, True)])
def test_a_repaired_copy_is_what_prune_writes(calib, compensate: bool, reconstruct: bool) -> None:
    """What a search evaluates (a repaired copy of the one analysis) equals the pruned model."""
    from onnxrecede.engine import Policy, analyze, make_plan
    from onnxrecede.importance.file_format import load_importances, scores_by_value
    from onnxrecede.io.model_files import load_model
    from onnxrecede.repair.steps import repaired_copy

    path, x = calib
    model = small_cnn(seed=3)
    imp = importances_removing([0, 2, 5], [1, 3])
    repair = RepairOptions(compensate=compensate, reconstruct=reconstruct,
                           calibration=str(path), batch_size=16)  # fmt: skip
    pruned, _ = api.prune(model, imp, threshold=0.5, repair=repair)
    m = load_model(model)
    analysis = analyze(m)
    plan = make_plan(analysis, scores_by_value(m, load_importances(imp)), Policy(ratio=None, threshold=0.5))
    original = _run(m, x)
    copy = repaired_copy(analysis, plan.keep_element, repair)
    np.testing.assert_allclose(_run(copy, x), _run(pruned, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(_run(m, x), original)  # the analysed model is left as it is
    plain = repaired_copy(analysis, plan.keep_element, None)
    assert _rel(_run(plain, x), _run(pruned, x)) > 1e-3  # the repair did something
