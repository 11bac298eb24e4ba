"""Rules in onnxrecede/engine/rules/norm.py: per-channel, layer, group and axis normalisations."""

from __future__ import annotations

import pytest

from tests.engine.rules.helpers import assert_barrier, prune_through, sandwich
from tests.models.handmade import GraphBuilder


def _bn(g: GraphBuilder, x: str) -> tuple[str, int]:
    params = [g.rand(f"bn.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias", "mean", "var")]
    return g.op("BatchNormalization", [x, *params], name="bn"), 8


def _instance_norm(g: GraphBuilder, x: str) -> tuple[str, int]:
    params = [g.rand(f"in.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias")]
    return g.op("InstanceNormalization", [x, *params], name="in"), 8


@pytest.mark.parametrize(
    ("middle", "name", "n_params"), [(_bn, "bn", 4), (_instance_norm, "in", 2)]
)
def test_per_channel_norm_slices_its_parameters(middle, name, n_params):
    pruned, _ = prune_through(sandwich(middle))
    node = next(n for n in pruned.graph if n.name == name)
    assert [v.const_value.shape for v in node.inputs[1:]] == [(4,)] * n_params


def test_per_channel_norm_barrier_parameters_not_constant():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scale = g.op("RandomNormal", [], name="scale_random", shape=[8])
        params = [g.rand(f"bn.{p}", (8,), 0.5, 1.5) for p in ("bias", "mean", "var")]
        return g.op("BatchNormalization", [x, scale, *params], name="bn"), 8

    assert_barrier(sandwich(middle), "BatchNormalization", "bn", r"parameters are not constants")


def test_per_channel_norm_barrier_training_outputs_used():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        params = [g.rand(f"bn.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias", "mean", "var")]
        y, mean, _ = g.multi("BatchNormalization", [x, *params], 3, name="bn", training_mode=1)
        return g.op("Add", [y, g.op("ReduceSum", [mean], keepdims=1)]), 8

    assert_barrier(sandwich(middle), "BatchNormalization", "bn", r"training-mode outputs")


def test_per_channel_norm_barrier_channels_not_on_axis_1():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Transpose", [x], perm=[0, 2, 1, 3])
        params = [g.rand(f"in.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias")]
        y = g.op("InstanceNormalization", [y, *params], name="in")
        return g.op("Transpose", [y], perm=[0, 2, 1, 3]), 8

    assert_barrier(sandwich(middle), "InstanceNormalization", "in", r"channel axis is not axis 1")


def test_layer_norm_over_trailing_axes_passes_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        params = [g.rand(f"ln.{p}", (8, 8), 0.5, 1.5) for p in ("scale", "bias")]
        return g.op("LayerNormalization", [x, *params], name="ln", axis=2), 8

    prune_through(sandwich(middle))


def test_layer_norm_barrier_across_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        params = [g.rand(f"ln.{p}", (8, 8, 8), 0.5, 1.5) for p in ("scale", "bias")]
        return g.op("LayerNormalization", [x, *params], name="ln", axis=1), 8

    assert_barrier(sandwich(middle), "LayerNormalization", "ln", r"normalises across the channel")


def test_group_norm_barrier():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        params = [g.rand(f"gn.{p}", (8,), 0.5, 1.5) for p in ("scale", "bias")]
        return g.op("GroupNormalization", [x, *params], name="gn", num_groups=2), 8

    assert_barrier(
        sandwich(middle), "GroupNormalization", "gn", r"GroupNormalization mixes channels"
    )


def test_lrn_barrier():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("LRN", [x], name="lrn", size=3), 8

    assert_barrier(sandwich(middle), "LRN", "lrn", r"LRN mixes channels")


AXIS_OPS = ["LpNormalization", "Softmax", "LogSoftmax", "Hardmax"]


@pytest.mark.parametrize("op", AXIS_OPS)
def test_axis_norm_along_another_axis_passes_channels(op):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op(op, [x], name="op", axis=-1), 8

    prune_through(sandwich(middle))


@pytest.mark.parametrize("op", AXIS_OPS)
def test_axis_norm_barrier_along_channels(op):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op(op, [x], name="op", axis=1), 8

    assert_barrier(sandwich(middle), op, "op", rf"{op} normalises across the channel axis")


def test_softmax_before_opset_13_coerces_trailing_axes():
    """Softmax-11 with axis=2 flattens axes 2.. only: channels (axis 1) pass; default axis=1 not."""

    def along(axis):
        def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
            return g.op("Softmax", [x], name="op", axis=axis), 8

        return middle

    prune_through(sandwich(along(2), opset=11))
    assert_barrier(sandwich(along(1), opset=11), "Softmax", "op", r"across the channel axis")
