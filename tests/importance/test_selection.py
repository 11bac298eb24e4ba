"""Channels chosen from data (``prune`` without ``-i``) against filter L1, on weights built so
that the L1 ranking misleads: channel 5 of ``p`` is channel 0 times 5 (large norm, no new
information), channel 2 has tiny weights that its consumer amplifies (small norm, needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnxrecede_cli.main import main

from onnxrecede import api
from onnxrecede.errors import AccuracyDropError, InputError
from onnxrecede.repair.steps import RepairOptions
from onnxrecede.runtime.accuracy import EvalOptions
from onnxrecede.runtime.probe import Probe


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    wp = rng.normal(0, 1, (6, 3, 1, 1)).astype(np.float32)
    bp = rng.normal(0, 0.3, 6).astype(np.float32)
    wp[2] *= 0.05
    bp[2] *= 0.05
    wp[5], bp[5] = 5 * wp[0], 5 * bp[0]
    wl = rng.normal(0, 1, (4, 6, 3, 3)).astype(np.float32)
    wl[:, 2] *= 20
    arrays = {"p.w": wp, "p.b": bp, "l.w": wl}
    nodes = [
        helper.make_node("Conv", ["input", "p.w", "p.b"], ["p_out"], name="p"),
        helper.make_node("Relu", ["p_out"], ["h"], name="relu"),
        helper.make_node("Conv", ["h", "l.w"], ["output"], name="l", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _error(pruned, model, x: np.ndarray) -> float:
    def run(m):
        return Probe(m, ["output"], include_outputs=False).run({"input": x})["output"]

    want = run(model)
    return float(np.linalg.norm(run(pruned) - want) / np.linalg.norm(want))


def _calibration(tmp_path: Path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(1).normal(0, 1, (16, 3, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=x)
    return tmp_path / "c.npz", x


def test_data_choice_removes_the_copy_where_l1_removes_the_needed_channel(tmp_path: Path) -> None:
    path, x = _calibration(tmp_path)
    model = _model()
    norms = np.abs(numpy_helper.to_array(model.graph.initializer[0])).sum(axis=(1, 2, 3))
    assert int(np.argmin(norms)) == 2 and int(np.argmax(norms)) == 5  # L1 is misled by design
    repair = RepairOptions(calibration=str(path), ridge=0.0)
    pruned, report = api.prune(model, None, ratio=0.2, repair=repair)
    assert report.removed_channels in ({"p": [5]}, {"p": [0]})  # the copy, or what it copies
    assert _error(pruned, model, x) < 1e-3  # nothing lost: the refit takes the other copy
    assert report.repair["reconstruction"]["consumers"][0]["applied"]  # type: ignore[index]
    l1 = {"p": norms.tolist()}
    rec = RepairOptions(reconstruct=True, calibration=str(path))
    by_l1, l1_report = api.prune(model, l1, ratio=0.2, repair=rec)
    assert l1_report.removed_channels == {"p": [2]}
    assert _error(by_l1, model, x) > 0.1


def _cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_prune_without_importances(tmp_path: Path) -> None:
    path, _ = _calibration(tmp_path)
    onnx.save(_model(), str(tmp_path / "m.onnx"))
    r = _cli("prune", tmp_path / "m.onnx", "-o", tmp_path / "p.onnx", "--ratio", "0.2",
             "--calibration", path, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "1 of 1 layer(s) refitted" in r.stdout
    assert (tmp_path / "p.onnx").exists()


def test_cli_without_importances_or_calibration_is_an_error(tmp_path: Path) -> None:
    onnx.save(_model(), str(tmp_path / "m.onnx"))
    r = _cli("prune", tmp_path / "m.onnx", "-o", tmp_path / "p.onnx", "--ratio", "0.2")
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: no importances: give -i IMPORTANCES, or --calibration DATA to choose the "
        "channels from data (then the cut is reconstructed on it)"
    ]
    assert not (tmp_path / "p.onnx").exists()


# ----------------------------------------------------------------------------- --allocate


def test_allocate_sensitivity_keeps_the_order_and_moves_the_amounts() -> None:
    from onnxrecede.importance.selection import allocate_by_sensitivity

    a, b = object(), object()
    ranking = {a: ("p", np.array([3.0, 1.0, 2.0])), b: ("q", np.array([1.0, 2.0]))}
    costs = {a: ("p_out", np.array([0.5, 0.1, 0.9]))}
    out = allocate_by_sensitivity(ranking, costs)
    np.testing.assert_array_equal(out[a][1], [0.9, 0.1, 0.5])  # rank order, the costs' values
    assert out[a][0] == "p" and out[b] == ranking[b]  # no costs: unchanged


def test_allocate_sensitivity_with_importances(tmp_path: Path) -> None:
    path, _ = _calibration(tmp_path)
    model = _model()
    norms = np.abs(numpy_helper.to_array(model.graph.initializer[0])).sum(axis=(1, 2, 3))
    repair = RepairOptions(calibration=str(path))
    _, report = api.prune(model, {"p": norms.tolist()}, ratio=0.2, allocate="sensitivity",
                          repair=repair)  # fmt: skip
    assert report.removed_channels == {"p": [2]}  # L1's choice inside the layer
    assert report.repair["reconstruction"]["consumers"][0]["applied"]  # type: ignore[index]
    with pytest.raises(InputError, match="--allocate sensitivity needs --calibration DATA"):
        api.prune(model, {"p": norms.tolist()}, ratio=0.2, allocate="sensitivity")


# ----------------------------------------------------------------------------- accuracy search


@pytest.fixture
def macs_as_accuracy(monkeypatch):
    """evaluate() answers with the model's fraction of the original MACs, rounded down to the
    tenth (1.0 for the original), so the search's path is known."""
    from onnxrecede.engine.cost import count_cost
    from onnxrecede.io.model_files import load_model
    from onnxrecede.runtime import accuracy as accuracy_module
    from onnxrecede.runtime.evaluate import Accuracy

    base = count_cost(load_model(_model()), {"input": [1, 3, 6, 6]}).macs

    def fake(model, samples, **_):
        frac = count_cost(load_model(model), {"input": [1, 3, 6, 6]}).macs / base
        top1 = np.floor(frac * 10 + 1e-9) / 10
        return Accuracy(top1, None, 0, None, 10, 2, "output", "fake")

    monkeypatch.setattr(accuracy_module, "evaluate", fake)


def test_target_accuracy_drop_bisects_on_macs(tmp_path: Path, macs_as_accuracy) -> None:
    path, x = _calibration(tmp_path)
    np.savez(tmp_path / "e.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    evaluation = EvalOptions(str(tmp_path / "e.npz"))
    _, report = api.prune(_model(), None, target_accuracy_drop=25, accuracy_search={"steps": 4},
                          evaluation=evaluation, repair=RepairOptions(calibration=str(path)))  # fmt: skip
    search = report.policy["target_accuracy_drop"]
    steps = search["steps"]
    keep_ok, keep_bad = 1.0, search["lowest_target_macs"]  # the bisection, replayed from the verdicts
    for s in steps:
        assert s["target_macs"] == pytest.approx((keep_ok + keep_bad) / 2)
        assert s["within"] == (s["drop_points"] <= 25)
        keep_ok, keep_bad = (s["target_macs"], keep_bad) if s["within"] else (keep_ok, s["target_macs"])
    assert [s["within"] for s in steps] == [False, False, True, True]
    assert report.macs_after == min(s["macs_after"] for s in steps if s["within"])
    with pytest.raises(AccuracyDropError, match=r"no cut tried keeps the top-1 drop within 1 "):
        api.prune(_model(), None, target_accuracy_drop=1, accuracy_search={"steps": 4},
                  evaluation=evaluation, repair=RepairOptions(calibration=str(path)))  # fmt: skip


def test_cli_target_accuracy_drop_needs_eval_data(tmp_path: Path) -> None:
    path, _ = _calibration(tmp_path)
    onnx.save(_model(), str(tmp_path / "m.onnx"))
    r = _cli("prune", tmp_path / "m.onnx", "-o", tmp_path / "p.onnx", "--calibration", path,
             "--target-accuracy-drop", "2")  # fmt: skip
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines() == [
        "error: --target-accuracy-drop needs --eval-data DATA (labelled samples)"
    ]
    r = _cli("prune", tmp_path / "m.onnx", "-o", tmp_path / "p.onnx", "--calibration", path,
             "--target-accuracy-drop", "2", "--ratio", "0.3")  # fmt: skip
    assert r.exit_code == 2 and "give only one of --ratio, --target-accuracy-drop" in r.stderr


def test_greedy_removal_follows_the_least_squares_error() -> None:
    """After each removal the summed cost equals the error of the best refit of what is left."""
    from onnxrecede.importance.selection import greedy_removal

    rng = np.random.default_rng(7)
    a = np.hstack([rng.normal(size=(200, 5)), np.ones((200, 1))])
    a[:, 4] = a[:, 1] * 2 + 0.05 * rng.normal(size=200)  # nearly a copy of channel 1
    w = rng.normal(size=(6, 3))
    y = a @ w
    cumulative = greedy_removal(np.linalg.inv(a.T @ a), w, channels=5, taps=1)
    order = np.argsort(cumulative)
    for k in range(1, 6):
        kept = [c for c in range(5) if c not in order[:k]] + [5]
        fit = np.linalg.lstsq(a[:, kept], y, rcond=None)[0]
        error = float(np.sum((a[:, kept] @ fit - y) ** 2))
        assert cumulative[order[k - 1]] == pytest.approx(error, rel=1e-6, abs=1e-9)
    assert set(order[:1]) <= {1, 4}  # one of the near-copies goes first, the other not second
    assert {int(order[0]), int(order[1])} != {1, 4}
