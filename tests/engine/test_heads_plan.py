"""Plan options with attention heads: budgets, --min-channels, --round-to, and MACs of the
matmuls between activations (tests/models/attention.py blocks)."""

from __future__ import annotations

import pytest

import onnxrecede
from onnxrecede.engine.cost import count_cost
from tests.engine.oracle import assert_equals_masked_oracle
from tests.models.attention import AttentionSpec, attention_model, dim_importances, head_importances

SPEC = AttentionSpec(layout="separate", heads=6, head_dim=4, tokens=6)
HEADS = [0.6, 0.1, 0.5, 0.2, 0.4, 0.3]


def _macs(model, name: str) -> int:
    return next(n.macs for n in count_cost(model).per_node if n.name == name)


def test_the_activation_matmuls_shrink_with_the_heads():
    model = attention_model(SPEC)
    pruned, report = onnxrecede.prune(model, head_importances(SPEC, HEADS), ratio=0.5)
    assert report.removed_heads == {"q, k, v": [1, 3, 5]}
    for name in ("scores", "context"):
        assert _macs(pruned, name) * 2 == _macs(model, name)  # half the heads: half the MACs
    assert report.macs_after == count_cost(pruned).macs


@pytest.mark.parametrize("target", ["target_params", "target_macs"])
def test_a_budget_removes_heads_until_it_fits(target):
    model = attention_model(SPEC)
    imp = head_importances(SPEC, HEADS)
    pruned, report = onnxrecede.prune(model, imp, **{target: 0.7})
    kept = report.params_after / report.params_before
    if target == "target_macs":
        kept = report.macs_after / report.macs_before
    assert kept <= 0.7
    removed = report.removed_heads["q, k, v"]
    assert removed == sorted(sorted(range(6), key=lambda h: HEADS[h])[: len(removed)])
    policy = {"ratio": None, "threshold": report.policy["threshold"]}
    assert_equals_masked_oracle(model, pruned, imp, **policy)


def test_min_channels_keeps_whole_heads():
    model = attention_model(SPEC)
    _, report = onnxrecede.prune(model, head_importances(SPEC, HEADS), ratio=0.9, min_channels=2)
    assert report.removed_heads == {"q, k, v": [1, 3, 4, 5]}  # the two best heads stay


def test_round_to_counts_head_dims():
    spec = AttentionSpec(layout="separate", heads=2, head_dim=8)
    model = attention_model(spec)
    imp = dim_importances(spec, [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4])
    _, report = onnxrecede.prune(model, imp, ratio=0.4, round_to=4, head_units="dims")
    # 40% of 16 units: 3 dims of q/k and 3 of v (5 of 8 kept), rounded to 4 kept dims
    assert report.removed_head_dims == {"q, k": [1, 3, 5, 7], "v": [1, 3, 5, 7]}
