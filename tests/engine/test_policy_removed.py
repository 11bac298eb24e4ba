"""Each policy option removes exactly the channels it should (not merely something valid).

The model: conv_a and conv_c (3->8 each) joined by a residual Add (one coupled group of 8),
then conv_b (8->6, its own group), then the classifier head (blocked: it feeds the output)::

    group A (conv_a + conv_c), 8 channels     group B (conv_b), 6 channels
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from onnxrecede_cli.main import main

import onnxrecede
from tests.engine.oracle import assert_equals_masked_oracle
from tests.engine.rules.helpers import sandwich
from tests.models.handmade import GraphBuilder

IMP = {
    "conv_a": [0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4],
    "conv_c": [0.9, 0.9, 0.1, 0.1, 0.5, 0.5, 0.0, 0.0],
    "conv_b": [0.05, 0.9, 0.15, 0.95, 0.25, 0.85],
}
# group A per channel: max [.9 .9 .7 .2 .6 .5 .5 .4], sum [1.7 1 .8 .3 1.1 .8 .5 .4]


def _model():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Add", [x, g.conv("input", "conv_c", 3, 8)], name="residual"), 8

    return sandwich(middle)


def _removed(**policy):
    _, report = onnxrecede.prune(_model(), IMP, verify=False, **policy)
    return report.removed_channels, report


def test_global_ratio_ranks_all_groups_together():
    # 14 channels, ratio 0.25 -> 3 lowest overall: B0 (.05), B2 (.15), A3 (.2)
    removed, report = _removed(ratio=0.25)
    assert removed == {"conv_a": [3], "conv_c": [3], "conv_b": [0, 2]}
    assert report.channels_removed == 3


def test_global_ratio_half():
    # 7 lowest: B0 .05, B2 .15, A3 .2, B4 .25, A7 .4, A5 .5, A6 .5
    removed, _ = _removed(ratio=0.5)
    assert removed == {"conv_a": [3, 5, 6, 7], "conv_c": [3, 5, 6, 7], "conv_b": [0, 2, 4]}


def test_local_ratio_removes_the_same_fraction_per_group():
    # floor(0.25 * 8) = 2 of group A (A3 .2, A7 .4), floor(0.25 * 6) = 1 of group B (B0)
    removed, _ = _removed(ratio=0.25, scope="local")
    assert removed == {"conv_a": [3, 7], "conv_c": [3, 7], "conv_b": [0]}


def test_threshold_removes_everything_below():
    removed, _ = _removed(threshold=0.45)
    assert removed == {"conv_a": [3, 7], "conv_c": [3, 7], "conv_b": [0, 2, 4]}


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [("max", [3, 5, 6, 7]), ("sum", [2, 3, 6, 7]), ("mean", [2, 3, 6, 7])],
)
def test_aggregate_combines_coupled_producers(aggregate, expected):
    # sum/mean: A3 .3, A7 .4, A6 .5, then A2/A5 tie at .8: A2 first
    removed, _ = _removed(ratio=0.5, scope="local", aggregate=aggregate)
    assert removed["conv_a"] == expected and removed["conv_c"] == expected


def test_min_channels_restores_the_most_important():
    # every channel is below 2.0; min_channels=3 keeps the 3 best of each group:
    # A0 .9, A1 .9, A2 .7 and B3 .95, B1 .9, B5 .85
    removed, report = _removed(threshold=2.0, min_channels=3)
    assert removed == {"conv_a": [3, 4, 5, 6, 7], "conv_c": [3, 4, 5, 6, 7], "conv_b": [0, 2, 4]}
    assert report.restored_for_minimum == 6


def test_min_channels_is_a_floor_not_a_target():
    removed, report = _removed(ratio=0.25, min_channels=3)
    assert removed == {"conv_a": [3], "conv_c": [3], "conv_b": [0, 2]}
    assert report.restored_for_minimum == 0


def test_ratio_zero_removes_nothing():
    removed, report = _removed(ratio=0.0)
    assert removed == {} and report.channels_removed == 0


def test_policies_through_the_command_line(tmp_path):
    import onnx

    model, imp = tmp_path / "m.onnx", tmp_path / "imp.json"
    onnx.save(_model(), str(model))
    imp.write_text(json.dumps(IMP))
    cases = [
        (["--ratio", "0.25"], {"conv_a": [3], "conv_c": [3], "conv_b": [0, 2]}),
        (
            ["--ratio", "0.25", "--scope", "local"],
            {"conv_a": [3, 7], "conv_c": [3, 7], "conv_b": [0]},
        ),
        (["--threshold", "0.45"], {"conv_a": [3, 7], "conv_c": [3, 7], "conv_b": [0, 2, 4]}),
        (
            ["--ratio", "0.5", "--scope", "local", "--aggregate", "sum"],
            {"conv_a": [2, 3, 6, 7], "conv_c": [2, 3, 6, 7], "conv_b": [0, 2, 4]},
        ),
        (
            ["--threshold", "2.0", "--min-channels", "3"],
            {"conv_a": [3, 4, 5, 6, 7], "conv_c": [3, 4, 5, 6, 7], "conv_b": [0, 2, 4]},
        ),
    ]
    for i, (options, expected) in enumerate(cases):
        out, report = tmp_path / f"p{i}.onnx", tmp_path / f"r{i}.json"
        args = ["prune", model, "-i", imp, "-o", out, "--report", report, "-q", *options]
        r = CliRunner().invoke(main, [str(a) for a in args])
        assert r.exit_code == 0, (options, r.output)
        assert json.loads(report.read_text())["removed_channels"] == expected, options
        policy = {"ratio": None, "threshold": None, "scope": "global", "aggregate": "max"}
        for flag, value in zip(options[::2], options[1::2]):
            key = flag[2:].replace("-", "_")
            policy[key] = value if key in ("scope", "aggregate") else float(value)
        min_channels = int(policy.pop("min_channels", 1) or 1)
        if policy["ratio"] is None and policy["threshold"] is None:
            policy["ratio"] = 0.5
        assert_equals_masked_oracle(model, out, IMP, min_channels=min_channels, **policy)
