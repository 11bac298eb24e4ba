"""The cost of a plan estimated from the analysis (budget) equals the cost counted on the
rewritten model, on the sample ResNet (convs, BN, Gemm head) and on handmade layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxrecede.engine import Policy, analyze, build_cost_model, count_cost, make_plan
from onnxrecede.engine.rewrite import rewrite
from onnxrecede.importance.file_format import load_importances, scores_by_value
from onnxrecede.io.model_files import load_model

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_estimate_equals_the_counted_cost_after_rewrite(ratio: float) -> None:
    m = load_model(SAMPLES / "resnet_small.onnx")
    imp = load_importances(SAMPLES / "resnet_small.imp.json")
    analysis = analyze(m)
    before = count_cost(m)
    plan = make_plan(analysis, scores_by_value(m, imp), Policy(ratio))
    estimate = build_cost_model(analysis, before).estimate(plan.keep_element)
    rewrite(analysis, plan.keep_element)
    after = count_cost(m)
    assert after.macs < before.macs and after.params < before.params
    assert estimate == (after.macs, after.params)


def test_per_channel_parameters_shrink_with_their_channels() -> None:
    """BatchNormalization, PRelu slopes, per-channel Mul/Add constants and a broadcast Add."""
    import numpy as np
    import onnx_ir as ir

    from onnxrecede.importance.file_format import Importances
    from tests.engine.rules.helpers import IMP, per_channel, sandwich
    from tests.models.handmade import GraphBuilder

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        bn = [g.rand(f"bn{i}", (8,), 0.5, 1.5) for i in range(4)]
        y = g.op("BatchNormalization", [x, *bn], name="bn")
        y = g.op("PRelu", [y, g.rand("slope", (8, 1, 1), 0.1, 0.3)], name="prelu")
        y = g.op("Mul", [y, per_channel(g, "scale")], name="mul")
        y = g.op("Add", [y, per_channel(g, "shift")], name="add")
        y = g.op("Add", [y, g.init("one", np.ones((1, 1, 1, 1), np.float32))], name="bcast")
        return y, 8

    m = ir.serde.deserialize_model(sandwich(middle))
    analysis = analyze(m)
    before = count_cost(m)
    imp = Importances({k: np.asarray(v, dtype=np.float64) for k, v in IMP.items()})
    plan = make_plan(analysis, scores_by_value(m, imp), Policy(0.5))
    estimate = build_cost_model(analysis, before).estimate(plan.keep_element)
    rewrite(analysis, plan.keep_element)
    after = count_cost(m)
    assert before.params - after.params > 8 * 3 * 9 // 2  # more than conv_a's weights went
    assert estimate == (after.macs, after.params)
