"""``prune --target-latency`` on a stubbed table: the plan meets the target, counts sit on steps."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.api import prune_file
from onnxrecede.latency.predict import predicted_fraction
from onnxrecede.policy.targets import UnreachableTargetError
from tests.latency.stub import STEP, predicted, stub_table

SAMPLE = "samples/resnet_small.onnx"
IMP = "samples/resnet_small.imp.json"


def _unit_counts(pruned: onnx.ModelProto, table: dict) -> dict[str, tuple[int, int]]:
    """(kept out, kept in) of every unit, read from the pruned model's weights."""
    weights = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    counts = {}
    for node in pruned.graph.node:
        if node.op_type not in ("Conv", "Gemm"):
            continue
        w = weights[node.input[1]]
        if node.op_type == "Gemm":
            trans = any(a.name == "transB" and a.i for a in node.attribute)
            w = w if trans else w[::-1]
            counts[node.name] = (w[0], w[1])
        else:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            counts[node.name] = (w[0], w[1] * group)
    assert set(counts) == {r["node"] for r in table["units"]}
    return counts


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_plan_meets_the_target_on_steps(fraction):
    table = stub_table(SAMPLE)
    pruned, report = onnxrecede.prune(
        SAMPLE, IMP, latency_table=table, target_latency=fraction,
        speedup_search={"seconds": 0.05},
    )  # fmt: skip
    lat = report.policy["latency"]
    proto = onnxrecede_to_proto(pruned)
    truth = predicted(table, _unit_counts(proto, table))
    assert lat["predicted_fraction"] == pytest.approx(truth)
    assert predicted_fraction(table, pruned) == pytest.approx(truth)
    assert truth <= fraction + 1e-9
    assert truth > fraction - 0.15  # the budget is used, not wasted
    assert report.verification["masked_reference"] == "passed"
    kept = [int(k) for k in lat["kept_counts"].values()]
    assert kept and all(k % STEP == 0 or k < STEP for k in kept)  # never just above a step
    assert lat["measured_ms"] > 0 and lat["measured_reference_ms"] > 0


def onnxrecede_to_proto(model) -> onnx.ModelProto:
    import onnx_ir as ir

    return ir.serde.serialize_model(model)


def test_keeps_more_importance_with_more_budget():
    table = stub_table(SAMPLE)
    kept = []
    for fraction in (0.3, 0.6, 0.9):
        _, report = onnxrecede.prune(
            SAMPLE, IMP, latency_table=table, target_latency=fraction, verify=False,
            speedup_search={"seconds": 0.05},
        )  # fmt: skip
        kept.append(report.policy["latency"]["importance_kept"])
    assert kept == sorted(kept) and kept[0] < kept[-1]


def test_unreachable_target_reports_the_floor():
    table = stub_table(SAMPLE)
    with pytest.raises(UnreachableTargetError, match="unreachable") as e:
        onnxrecede.prune(SAMPLE, IMP, latency_table=table, target_latency=0.01, verify=False)
    assert 0.01 < e.value.reachable < 1


def test_target_speedup_with_a_table_is_one_over_x():
    table = stub_table(SAMPLE)
    _, report = onnxrecede.prune(
        SAMPLE, IMP, latency_table=table, target_speedup=2.0, verify=False,
        speedup_search={"seconds": 0.05},
    )  # fmt: skip
    assert report.policy["target_latency"] == 0.5
    assert report.policy["latency"]["predicted_fraction"] <= 0.5


def test_round_to_and_min_channels_restrict_the_options():
    table = stub_table(SAMPLE)
    _, report = onnxrecede.prune(
        SAMPLE, IMP, latency_table=table, target_latency=0.5, verify=False, round_to=16,
        min_channels=16, speedup_search={"seconds": 0.05},
    )  # fmt: skip
    gone = {g for b in report.blocks_removed for g in b["groups"]}
    for g in report.groups:
        if g.status == "pruned" and g.id not in gone:  # min-channels: only what remains
            assert (g.size - g.removed) % 16 == 0 and g.size - g.removed >= 16
        elif g.id in gone:
            assert g.removed == g.size


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_refuses_a_table_of_another_model(tmp_path):
    table = stub_table(SAMPLE)
    table["model_fingerprint"] = "0" * 64
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    r = _run(["prune", SAMPLE, "-i", IMP, "-o", tmp_path / "p.onnx", "--latency-table", path,
              "--target-latency", "0.5"])  # fmt: skip
    assert r.exit_code == 2
    assert (
        r.output.strip()
        .splitlines()[-1]
        .startswith("error: the latency table was measured for another model")
    )
    assert not (tmp_path / "p.onnx").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-latency", "0.5"], "--target-latency needs --latency-table"),
        (["--latency-table", "T", "--ratio", "0.3"], "--latency-table needs --target-latency"),
        (["--latency-table", "T", "--target-latency", "1.5"], "must be in (0, 1)"),
        (["--latency-table", "missing.json", "--target-latency", "0.5"], "latency table not found"),
    ],
)
def test_cli_bad_latency_options(tmp_path, extra, message):
    table = tmp_path / "T"
    table.write_text(json.dumps(stub_table(SAMPLE)))
    extra = [str(table) if a == "T" else a for a in extra]
    r = _run(["prune", SAMPLE, "-i", IMP, "-o", tmp_path / "p.onnx", *extra])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]


def test_local_scope_normalises_per_group():
    table = stub_table(SAMPLE)
    _, report = onnxrecede.prune(
        SAMPLE, IMP, latency_table=table, target_latency=0.5, verify=False, scope="local",
        speedup_search={"seconds": 0.05},
    )  # fmt: skip
    assert report.policy["latency"]["predicted_fraction"] <= 0.5
    assert np.isfinite(report.policy["latency"]["importance_kept"])


def test_not_a_table(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something"}))
    r = _run(["prune", SAMPLE, "-i", IMP, "-o", tmp_path / "p.onnx",
              "--latency-table", path, "--target-latency", "0.5"])  # fmt: skip
    assert r.exit_code == 2 and "is not an onnxrecede latency table" in r.output


def test_knapsack_removes_a_cheap_branch_as_one_option(zoo_path, monkeypatch):
    from onnxrecede.engine.analysis import analyze
    from onnxrecede.engine.branches import find_branches
    from onnxrecede.io.model_files import load_model
    from tests.models.importances import make_random_importances

    path = zoo_path("resnet_bottleneck", "torchscript")
    analysis = analyze(load_model(path))
    branch = find_branches(analysis)[0]
    inner = [p for g in branch.groups for p in analysis.groups[g].producers]
    imp = {k: [0.5 + 0.5 * v for v in vs] for k, vs in make_random_importances(path).items()}
    for name in inner:  # the branch's channels matter little
        imp[name] = [0.01 * v for v in imp[name]]
    table = stub_table(path)
    timed = []  # the measured reference must be the original, branches and all
    monkeypatch.setattr(
        "onnxrecede.api.measure_cut",
        lambda reference, cut, table, seconds: timed.append(len(list(reference.graph))) or {},
    )
    pruned, report = onnxrecede.prune(
        path, imp, latency_table=table, target_latency=0.8, speedup_search={"seconds": 0.05},
        min_channels=2,
    )  # fmt: skip
    assert timed == [len(onnx.load(path).graph.node)]
    (block,) = report.blocks_removed
    assert block["nodes"] == [n.name for n in branch.nodes]
    assert report.verification["masked_reference"] == "passed"
    lat = report.policy["latency"]
    assert lat["predicted_fraction"] <= 0.8
    assert predicted_fraction(table, pruned) == pytest.approx(lat["predicted_fraction"])
    assert "0" in {str(v) for v in lat["kept_counts"].values()}


def test_without_branch_options_the_branch_stays(zoo_path, monkeypatch):
    """The same cut when no branch may go: every group keeps channels (break-the-feature check)."""
    path = zoo_path("resnet_bottleneck", "torchscript")
    monkeypatch.setattr("onnxrecede.api.find_branches", lambda analysis: [])
    table = stub_table(path)
    from tests.models.importances import make_random_importances

    imp = make_random_importances(path)
    _, report = onnxrecede.prune(
        path, imp, latency_table=table, target_latency=0.8, verify=False,
        speedup_search={"seconds": 0.05},
    )  # fmt: skip
    assert report.blocks_removed == []
    assert all(int(v) > 0 for v in report.policy["latency"]["kept_counts"].values())


def test_api_options_checked_before_any_loading(tmp_path):
    """PlanRequest reads and checks the table with the other options: the model is never read."""
    table = stub_table(SAMPLE)
    missing = str(tmp_path / "absent.onnx")
    with pytest.raises(onnxrecede.InputError, match="give only one of --ratio, --target-latency"):
        onnxrecede.prune(missing, IMP, ratio=0.3, latency_table=table, target_latency=0.5)
    with pytest.raises(onnxrecede.InputError, match="--target-latency: 'half' is not a number"):
        onnxrecede.prune(missing, IMP, latency_table=table, target_latency="half")
    with pytest.raises(onnxrecede.InputError, match="--latency-table needs --target-latency"):
        onnxrecede.prune(missing, IMP, latency_table=table)


def test_prune_file_refuses_to_overwrite_the_table(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(stub_table(SAMPLE)))
    before = path.read_bytes()
    with pytest.raises(onnxrecede.InputError, match="latency table"):
        prune_file(SAMPLE, IMP, path, latency_table=path, target_latency=0.5)
    assert path.read_bytes() == before
