"""Rewrite acts on what analysis decided per node, not on how label arrays happen to be shared."""

from __future__ import annotations

import json
from pathlib import Path

from onnxrecede.engine.analysis import analyze
from onnxrecede.engine.plan import Policy, make_plan
from onnxrecede.engine.rewrite import mask_consumers, rewrite
from onnxrecede.engine.spaces import ChannelView
from onnxrecede.importance.file_format import load_importances, resolve_importances
from onnxrecede.io.model_files import load_model
from tests.engine.fuzz_graphs import build, random_importances
from tests.engine.oracle import assert_close, run

SPEC = Path(__file__).parent / "fuzz_regressions" / "every_block.json"


def test_copied_label_arrays_change_nothing():
    """Every view's labels copied (a harmless refactor elsewhere): same channels removed, the
    result still equals the masked oracle."""
    spec = json.loads(SPEC.read_text())
    model = build(spec)
    m = load_model(model)
    analysis = analyze(m)
    imp = load_importances(random_importances(model, spec["imp_seed"]))
    scores = {r.value: (k, imp.scores[k]) for k, r in resolve_importances(m, imp).items()}
    plan = make_plan(analysis, scores, Policy(**spec["policy"]))
    assert (~plan.keep_element).any()
    kinds = {type(d).__name__ for d in analysis.ctx.decisions.values()}
    assert {"ConvKind", "SplitChannels", "SliceChannels", "GatherChannels", "PadChannels"} <= kinds
    for value, view in list(analysis.ctx.views.items()):
        analysis.ctx.views[value] = ChannelView(view.axis, view.labels.copy())
    masked = mask_consumers(analysis, plan.keep_element)
    rewrite(analysis, plan.keep_element)
    expected, feeds = run(masked)
    actual, _ = run(m, feeds)
    assert_close(expected, actual)


def _other_axes(g, x):
    import numpy as np

    a, b = g.multi("Split", [x, g.ints("sizes", [4, 4])], 2, name="split_h", axis=2)
    y = g.op("Concat", [b, a], name="cat_h", axis=2)
    y = g.op("Gather", [y, g.ints("idx", [7, 0, 1, 2, 3, 4, 5, 6])], name="gather_w", axis=3)
    y = g.op("MatMul", [y, g.rand("w_rows", (8, 8))], name="mm_rows")
    pads = g.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])
    y = g.op("Pad", [y, pads], name="pad_hw")
    return g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[1, 1]), int(np.int64(8))


def test_ops_on_other_axes_are_left_alone_whatever_the_labels():
    from tests.engine.rules.helpers import IMP, sandwich

    model = sandwich(_other_axes)
    m = load_model(model)
    analysis = analyze(m)
    imp = load_importances(IMP)
    scores = {r.value: (k, imp.scores[k]) for k, r in resolve_importances(m, imp).items()}
    plan = make_plan(analysis, scores, Policy(ratio=0.5))
    assert (~plan.keep_element).any()
    for value, view in list(analysis.ctx.views.items()):
        analysis.ctx.views[value] = ChannelView(view.axis, view.labels.copy())
    masked = mask_consumers(analysis, plan.keep_element)
    rewrite(analysis, plan.keep_element)
    nodes = {n.name: n for n in m.graph}
    assert nodes["gather_w"].inputs[1].const_value.numpy().tolist() == [7, 0, 1, 2, 3, 4, 5, 6]
    assert nodes["mm_rows"].inputs[1].const_value.shape == (8, 8)
    assert nodes["split_h"].inputs[1].const_value.numpy().tolist() == [4, 4]
    expected, feeds = run(masked)
    actual, _ = run(m, feeds)
    assert_close(expected, actual)
