"""Keras models as tf2onnx exports them (tests/models/keras_like.py), with a symbolic batch:
squeeze-and-excite reshapes ``[-1, C, 1, 1]`` keep the channel axis, only the classifier head
is blocked, every cut equals the masked reference at any batch size, and ``--shape`` binds
the batch for the analysis when a reshape needs it."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

import onnxrecede
from tests.engine.oracle import assert_close, masked_oracle, run
from tests.models.importances import make_random_importances
from tests.models.keras_like import BATCH, HW, INPUT, KERAS_LIKE, build_efficientnet_like

BUILDERS = {name: build for name, build, _ in KERAS_LIKE}


def _feeds(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {INPUT: rng.standard_normal((batch, HW, HW, 3)).astype(np.float32)}


def _assert_cut_equals_oracle(model, pruned, imp, batch: int, **policy) -> None:
    expected, feeds = run(masked_oracle(model, imp, ratio=0.5, **policy), _feeds(batch))
    actual, _ = run(pruned, feeds)
    assert_close(expected, actual)
    original, _ = run(model, feeds)
    assert not np.allclose(original[0], actual[0]), "the cut changed nothing"


@pytest.mark.parametrize("name", list(BUILDERS))
def test_symbolic_batch_blocks_only_the_classifier_head(name, tmp_path):
    model = BUILDERS[name]()
    info = onnxrecede.inspect(model)
    blocked = [g for g in info.groups if g.status == "blocked"]
    assert [sorted(g.producers) for g in blocked] == [["predictions"]]
    assert [b["op_type"] for b in blocked[0].barriers] == ["Softmax"]
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    imp = make_random_importances(path, seed=7)
    pruned, report = onnxrecede.prune(model, imp, ratio=0.5)
    assert report.verification["masked_reference"] == "passed"
    assert report.macs_after < report.macs_before
    # every group but the head loses channels, the SE convs included
    pruned_groups = [g for g in report.groups if g.status == "pruned"]
    assert len(pruned_groups) == len(info.groups) - 1
    assert pruned.graph.inputs[0].shape[0].value == BATCH
    for batch in (1, 3):
        _assert_cut_equals_oracle(model, pruned, imp, batch)


def test_se_reshape_keeps_minus_one_and_rewrites_the_channel_entry():
    model = BUILDERS["keras_efficientnet"]()
    imp = {"block2a_expand": np.linspace(1, 0, 32).tolist()}
    pruned, report = onnxrecede.prune(model, imp, ratio=0.5)
    assert report.removed_channels["block2a_expand"] == list(range(16, 32))
    shape = next(n for n in pruned.graph if n.name == "block2a_se_reshape").inputs[1]
    assert shape.const_value.numpy().tolist() == [-1, 16, 1, 1]
    _assert_cut_equals_oracle(model, pruned, imp, 2)


FROZEN_SE = (
    r"^the target shape \[1, 12, 1, 1\] could not be matched to the input \[unk__\d+, 12\] "
    r"because unk__\d+ is symbolic; give the input dims with --shape NAME:DIMS "
    r"\(dynamic inputs: input_1 \[unk__618, 16, 16, 3\]\)$"
)


def test_batch_frozen_in_the_target_is_a_barrier_that_names_shape():
    model = build_efficientnet_like(se_target=1)
    info = onnxrecede.inspect(model)
    found = [b for b in info.barriers if b["node"] == "block3a_se_reshape"]
    assert len(found) == 1 and re.match(FROZEN_SE, found[0]["reason"]), found
    group = next(g for g in info.groups if "block2a_project" in g.producers)
    assert group.status == "blocked"


def test_shape_binds_the_batch_for_the_analysis(tmp_path):
    model = build_efficientnet_like(se_target=1)
    shapes = {INPUT: (1, HW, HW, 3)}
    info = onnxrecede.inspect(model, input_shapes=shapes)
    assert not [b for b in info.barriers if b["node"] == "block3a_se_reshape"]
    imp = {"block2a_project": [float(i) for i in range(12)]}
    pruned, report = onnxrecede.prune(model, imp, ratio=0.5, input_shapes=shapes)
    assert report.removed_channels["block2a_project"] == list(range(6))
    assert report.verification["masked_reference"] == "passed"
    # the model written keeps its dynamic input; the cut is exact for the bound batch
    dims = [getattr(d, "value", d) for d in pruned.graph.inputs[0].shape]
    assert dims == [BATCH, HW, HW, 3]
    _assert_cut_equals_oracle(model, pruned, imp, 1, input_shapes=shapes)


def _cli(*args: object):
    from click.testing import CliRunner
    from onnxrecede_cli.main import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_inspect_shape_on_the_command_line(tmp_path):
    path = tmp_path / "frozen_se.onnx"
    onnx.save(build_efficientnet_like(se_target=1), path)
    r = _cli("inspect", path)
    assert r.exit_code == 0 and "block3a_se_reshape" in r.stdout and "--shape" in r.stdout
    unbound = json.loads(_cli("inspect", path, "--json").stdout)
    r = _cli("inspect", path, "--json", "--shape", f"{INPUT}:1x{HW}x{HW}x3")
    assert r.exit_code == 0, r.output
    bound = json.loads(r.stdout)
    assert [b["node"] for b in bound["barriers"]] == ["predictions_sm"]
    assert bound["macs"] == unbound["macs"]  # the batch counts 1 without --shape
    assert len(bound["groups"]) == len(unbound["groups"])
    assert [g["status"] for g in bound["groups"]].count("blocked") == 1
    r = _cli("inspect", path, "--shape", f"{INPUT}:1x{HW}x{HW}x4")  # contradicts a static dim
    assert r.exit_code == 2 and r.stderr.startswith("error: --shape input_1:1x16x16x4 conflicts")
    assert r.stderr.count("\n") == 1
    r = _cli("inspect", path, "--shape", "nope:1x2")
    assert r.exit_code == 2 and r.stderr.startswith("error: --shape names 'nope', which is not")
    r = _cli("inspect")
    assert r.exit_code == 2 and r.stderr.startswith("error: Missing argument 'MODEL'")


def test_plot_histogram_binds_the_batch_like_the_cut(tmp_path):
    """inspect --plot draws the groups the cut would prune: the group behind the frozen SE
    reshape is blocked (not drawn) until --shape binds the batch."""
    from onnxrecede.report.plot import histogram_data

    path = tmp_path / "frozen_se.onnx"
    onnx.save(build_efficientnet_like(se_target=1), path)
    imp = make_random_importances(path, seed=7)
    unbound = histogram_data(path, imp, ratio=0.5)
    bound = histogram_data(path, imp, ratio=0.5, input_shapes={INPUT: (1, HW, HW, 3)})
    blocked = [g for g in onnxrecede.inspect(path).groups if g.status == "blocked"]
    freed = [g for g in blocked if "block3a_se_reshape" in {b["node"] for b in g.barriers}]
    assert len(freed) == 1
    assert len(bound.groups) == len(unbound.groups) + 1
    assert len(bound.values) == len(unbound.values) + freed[0].size
