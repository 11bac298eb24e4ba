"""`prune --target-macs/--target-params/--round-to/--ratio auto`: what is removed and the exit codes."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from onnxrecede.engine.analysis import analyze
from onnxrecede.importance.criteria import compute_importances
from onnxrecede.importance.file_format import save_importances
from onnxrecede.io.model_files import load_model
from onnxrecede.policy.targets import UnreachableTargetError, prunable_importances

ZOO = [
    ("resnet_bottleneck", "dynamo"),
    ("mobilenetv2_block", "torchscript"),
    ("densenet_concat", "dynamo"),  # one channel carries >5% of the MACs: the refined search
    ("grouped_conv", "dynamo"),
    ("unet_decoder", "dynamo"),
    ("se_block_linear", "torchscript"),
]


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _l1(path, tmp_path, normalize="mean"):
    imp = tmp_path / f"{path.stem}-l1.json"
    save_importances(imp, compute_importances(load_model(path), "l1", normalize=normalize).scores)
    return imp


def _out_channels(model: onnx.ModelProto) -> dict[str, int]:
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            out[n.name] = shapes[n.input[1]][0]
        elif n.op_type == "Gemm":
            w = shapes[n.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            out[n.name] = w[0] if trans_b else w[1]
    return out


@pytest.mark.parametrize(
    ("name", "exporter", "metric"),
    [(n, e, "macs") for n, e in ZOO] + [(n, e, "params") for n, e in ZOO[1:4]],
)
def test_target_lands_between_90_and_100_percent_of_the_budget(
    name, exporter, metric, zoo_path, tmp_path
):
    path = zoo_path(name, exporter)
    imp = _l1(path, tmp_path)
    _, report = onnxrecede.prune(path, imp, **{f"target_{metric}": 0.5})
    before, after = (
        (report.macs_before, report.macs_after)
        if metric == "macs"
        else (report.params_before, report.params_after)
    )
    assert 0.45 <= after / before <= 0.5, (name, after / before)
    # the plan's cost model agrees with the cost counted on the rewritten model
    search = report.policy["search"]
    assert (search["estimate_macs"], search["estimate_params"]) == (
        report.macs_after,
        report.params_after,
    )
    assert report.verification["masked_reference"] == "passed"


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2"])
def test_large_models_target_macs_and_round_to(name, large_path, tmp_path):
    path = large_path(name)
    imp = _l1(path, tmp_path)
    out = tmp_path / "p.onnx"
    r = _run(["prune", path, "-i", imp, "-o", out, "--target-macs", "0.5", "--round-to", "8",
              "--no-verify", "--json", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    reached = doc["macs"]["after"] / doc["macs"]["before"]
    assert 0.45 <= reached <= 0.5
    pruned = _out_channels(onnx.load(str(out)))
    original = _out_channels(onnx.load(str(path)))
    assert doc["removed_channels"]
    for node in doc["removed_channels"]:
        assert pruned[node] % 8 == 0, (node, original[node], pruned[node])
        assert pruned[node] == original[node] - len(doc["removed_channels"][node])


@pytest.mark.parametrize("scope", ["global", "local"])
def test_round_to_on_zoo_models(scope, zoo_path, tmp_path):
    models = [
        ("resnet_bottleneck", "torchscript"),
        ("mobilenetv2_block", "dynamo"),
        ("grouped_conv", "torchscript"),
        ("densenet_concat", "torchscript"),
    ]
    for name, exporter in models if scope == "global" else models[:2]:
        path = zoo_path(name, exporter)
        imp = _l1(path, tmp_path)
        pruned, report = onnxrecede.prune(path, imp, ratio=0.6, round_to=4, scope=scope)
        sizes = _out_channels(onnx.load(str(path)))
        after = _out_channels(onnxrecede.io.model_files.ir.to_proto(pruned))
        assert report.removed_channels, name
        for node, gone in report.removed_channels.items():
            assert (sizes[node] - len(gone)) % 4 == 0, (name, node, sizes[node], len(gone))
            assert after[node] == sizes[node] - len(gone)
        assert report.policy["round_to"] == 4


def test_round_to_keeps_the_nearest_multiple_by_importance(handmade_path, tmp_path):
    path = handmade_path("split13")  # conv_a has 8 channels
    scores = {"conv_a": [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.05]}
    # ratio 0.3 of 8 removes 2 (0.05, 0.1); 6 kept rounds to 8 with round_to 4: nothing removed
    _, report = onnxrecede.prune(path, scores, ratio=0.3, round_to=4)
    assert "conv_a" not in report.removed_channels
    # a threshold of 0.65 removes 5 channels; 3 kept rounds to 4: the best removed one comes back
    _, report = onnxrecede.prune(path, scores, threshold=0.65, round_to=4)
    assert report.removed_channels["conv_a"] == [1, 3, 5, 7]  # 0.6 (channel 6) came back


def test_unreachable_target_exits_2_with_the_smallest_reachable_value(handmade_path, tmp_path):
    path = handmade_path("softmax_channels")  # conv_a's channels are blocked by the Softmax
    imp = _l1(path, tmp_path)
    r = _run(["prune", path, "-i", imp, "-o", tmp_path / "p.onnx", "--target-macs", "0.05"])
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("error: --target-macs 0.05 is unreachable")
    reachable = float(re.search(r"at least ([0-9.]+) of the macs", line).group(1))
    assert 0.05 < reachable < 1
    _, report = onnxrecede.prune(path, imp, target_macs=reachable + 1e-4)
    assert report.macs_after / report.macs_before == pytest.approx(reachable, abs=1e-4)
    with pytest.raises(UnreachableTargetError):
        onnxrecede.prune(path, imp, target_macs=reachable - 1e-3)
    assert not (tmp_path / "p.onnx").exists()


def test_target_option_errors(handmade_path, tmp_path):
    path = handmade_path("split13")
    imp = _l1(path, tmp_path)
    out = tmp_path / "p.onnx"
    for args, pattern in [
        (["--target-macs", "1.5"], r"--target-macs must be in \(0, 1\)"),
        (["--target-macs", "0.5", "--ratio", "0.3"], r"only one of --ratio, --target-macs"),
        (["--ratio", "most"], r"--ratio must be a number in \[0, 1\) or 'auto'"),
        (["--round-to", "0"], r"round-to must be at least 1"),
    ]:
        r = _run(["prune", path, "-i", imp, "-o", out, *args])
        assert r.exit_code == 2, args
        assert re.search(pattern, r.stderr), (args, r.stderr)
    assert not out.exists()


# ----------------------------------------------------------------------------- ratio auto


def _modal_importances(path, low_share: float, bimodal: bool, seed: int = 0):
    """Per position-in-layer values shared by all producers, so coupled members agree."""
    rng = np.random.default_rng(seed)
    n = 4096
    if bimodal:
        low = rng.random(n) < low_share
        values = np.where(low, rng.uniform(1e-4, 1e-3, n), rng.uniform(0.6, 1.0, n))
    else:
        values = rng.lognormal(0.0, 0.5, n)
    shapes = {t.name: tuple(t.dims) for t in onnx.load(str(path)).graph.initializer}
    scores = {}
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv":
            scores[node.name] = values[: shapes[node.input[1]][0]].tolist()
    return scores


def test_ratio_auto_removes_the_low_mode(large_path, tmp_path):
    path = large_path("resnet50")
    scores = _modal_importances(path, 0.3, bimodal=True)
    imp = tmp_path / "imp.json"
    imp.write_text(json.dumps(scores))
    model = load_model(path)
    analysis = analyze(model)
    from onnxrecede.api import _scores
    from onnxrecede.importance.file_format import load_importances

    values = prunable_importances(analysis, _scores(model, load_importances(imp)), "max")
    low_mode = int((values < 0.01).sum())
    assert low_mode > 100
    r = _run(["prune", path, "-i", imp, "-o", tmp_path / "p.onnx", "--ratio", "auto",
              "--no-verify", "--json", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    removed = doc["channels"]["removed"]
    assert abs(removed - low_mode) <= 0.02 * low_mode, (removed, low_mode)
    auto = doc["policy"]["auto"]
    assert auto["separation"] > 2 and 1e-3 < auto["threshold"] < 0.6
    assert doc["policy"]["ratio"] == "auto"


def test_ratio_auto_prints_threshold_and_fraction(zoo_path, tmp_path):
    path = zoo_path("vgg_chain_bn", "torchscript")
    scores = _modal_importances(path, 0.4, bimodal=True, seed=1)
    r = _run(["prune", path, "-i", json_file(tmp_path, scores), "-o", tmp_path / "p.onnx",
              "--ratio", "auto", "-q"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert re.search(r"ratio auto: threshold [0-9.e-]+ at the valley .* removed \d+/\d+ prunable "
                     r"channels \(\d+\.\d%\)", r.stdout)  # fmt: skip


def json_file(tmp_path, scores):
    path = tmp_path / "imp.json"
    path.write_text(json.dumps(scores))
    return path


def test_ratio_auto_refuses_a_unimodal_set(large_path, zoo_path, tmp_path):
    path = large_path("mobilenetv2")
    scores = _modal_importances(path, 0.0, bimodal=False)
    out = tmp_path / "p.onnx"
    r = _run(["prune", path, "-i", json_file(tmp_path, scores), "-o", out, "--ratio", "auto"])
    assert r.exit_code == 2
    assert re.match(r"error: --ratio auto: the importances are not bimodal \(Ashman's D = "
                    r"[0-9.]+ <= 2.*give --ratio R", r.stderr)  # fmt: skip
    assert not out.exists()
