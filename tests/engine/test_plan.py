"""Plan policies: global and local ratios, thresholds, aggregation, minimum channels, ties."""

from __future__ import annotations

import numpy as np
import pytest

import onnxrecede
from onnxrecede.errors import InputError


def _conv_sizes(path):
    import onnx

    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    return {n.name: inits[n.input[1]].dims[0] for n in m.graph.node if n.op_type == "Conv"}


def _imp(sizes, fn):
    return {name: [float(fn(name, i)) for i in range(n)] for name, n in sizes.items()}


def test_global_ratio_removes_lowest_first(handmade_path):
    path = handmade_path("split13")
    sizes = _conv_sizes(path)
    imp = _imp(sizes, lambda name, i: i / 100 + (1 if name == "conv_a" else 0))
    _, report = onnxrecede.prune(path, imp, ratio=0.3, verify=False)
    assert "conv_a" not in report.removed_channels  # all its channels rank above the others
    assert report.removed_channels, "nothing was removed"
    for removed in report.removed_channels.values():
        assert removed == list(range(len(removed)))  # lowest positions first


def test_local_ratio_is_per_group(handmade_path):
    path = handmade_path("instance_norm")
    sizes = _conv_sizes(path)
    imp = _imp(sizes, lambda name, i: i + (100 if name == "conv_a" else 0))
    _, report = onnxrecede.prune(path, imp, ratio=0.5, scope="local", verify=False)
    assert len(report.removed_channels["conv_a"]) == sizes["conv_a"] // 2


def test_threshold(handmade_path):
    path = handmade_path("split13")
    sizes = _conv_sizes(path)
    imp = _imp(sizes, lambda name, i: 0.0 if i % 2 else 1.0)
    _, report = onnxrecede.prune(path, imp, threshold=0.5, verify=False)
    assert report.removed_channels, "nothing was removed"
    for removed in report.removed_channels.values():
        assert all(i % 2 for i in removed)


def test_split_outputs_never_empty(handmade_path):
    # split13 splits conv_a's 8 channels 3 + 5: removing its 4 lowest would empty a branch.
    path = handmade_path("split13")
    imp = _imp(_conv_sizes(path), lambda name, i: i + (100 if name == "conv_a" else 0))
    _, report = onnxrecede.prune(path, imp, ratio=0.5, scope="local", verify=False)
    assert report.removed_channels["conv_a"] == [0, 1, 3]
    assert report.restored_for_minimum == 1


def test_min_channels_is_respected(handmade_path):
    path = handmade_path("split13")
    sizes = _conv_sizes(path)
    imp = _imp(sizes, lambda name, i: 0.0)
    _, report = onnxrecede.prune(path, imp, threshold=0.5, min_channels=3, verify=False)
    assert report.removed_channels, "nothing was removed"
    for name, removed in report.removed_channels.items():
        assert sizes[name] - len(removed) >= 3
    assert report.restored_for_minimum > 0


def test_ties_are_deterministic(handmade_path):
    path = handmade_path("split13")
    imp = _imp(_conv_sizes(path), lambda name, i: 0.5)
    reports = [onnxrecede.prune(path, imp, ratio=0.5, verify=False)[1] for _ in range(2)]
    assert reports[0].removed_channels and reports[0].removed_channels == reports[1].removed_channels


def test_aggregate_max_keeps_what_any_member_needs(zoo_path):
    # In a residual stream every producer scores the same channels; with "max" a channel
    # survives when any member rates it high.
    from tests.models.importances import make_random_importances

    path = zoo_path("resnet_basic", "dynamo")
    imp = make_random_importances(path, seed=1)
    _, r_max = onnxrecede.prune(path, imp, ratio=0.5, aggregate="max", verify=False)
    _, r_sum = onnxrecede.prune(path, imp, ratio=0.5, aggregate="sum", verify=False)
    assert r_max.channels_removed == r_sum.channels_removed
    assert r_max.removed_channels != r_sum.removed_channels


def test_bad_policy(handmade_path):
    with pytest.raises(InputError, match="scope"):
        onnxrecede.prune(handmade_path("split13"), {"conv_a": list(np.ones(8))}, scope="x")
