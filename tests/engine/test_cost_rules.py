"""Each rule's cost hooks (``macs``, ``param_inputs``) as ``onnxrecede.cost`` counts them."""

from __future__ import annotations

import numpy as np
import pytest

from onnxrecede.engine.cost import count_cost
from tests.engine.rules.helpers import sandwich
from tests.models.handmade import GraphBuilder

# conv_a 3->8 (8*3*9 + 8), conv_b 8->6 (6*8*9 + 6), fc 6->10 (60 + 10)
BASE_PARAMS = 224 + 438 + 70
BASE_MACS = 8 * 64 * 27 + 6 * 64 * 72 + 60


def _params(middle) -> int:
    return count_cost(sandwich(middle)).params - BASE_PARAMS


def test_the_sandwich_itself():
    cost = count_cost(sandwich(lambda g, x: (x, 8)))
    assert (cost.params, cost.macs) == (BASE_PARAMS, BASE_MACS)


@pytest.mark.parametrize(
    ("op", "shape", "attrs", "params"),
    [
        ("LayerNormalization", (8, 8), {"axis": 2}, 2 * 64),
        ("GroupNormalization", (8,), {"num_groups": 2}, 2 * 8),
        ("InstanceNormalization", (8,), {}, 2 * 8),
    ],
)
def test_norm_scale_and_bias_are_parameters(op, shape, attrs, params):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        scale, bias = g.rand(f"{op}.s", shape), g.rand(f"{op}.b", shape)
        return g.op(op, [x, scale, bias], name="norm", **attrs), 8

    assert _params(middle) == params


def test_lrn_has_no_parameters():
    assert _params(lambda g, x: (g.op("LRN", [x], size=3), 8)) == 0


def test_prelu_slope_and_per_channel_mul_add_are_parameters_scalars_are_not():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("PRelu", [x, g.rand("slope", (8, 1, 1))])
        y = g.op("Mul", [y, g.rand("scale", (1, 8, 1, 1))])
        y = g.op("Mul", [y, g.init("two", np.array(2.0, np.float32))])
        y = g.op("Div", [y, g.rand("div", (1, 8, 1, 1))])  # Div constants are not parameters
        return g.op("Add", [y, g.rand("shift", (1, 8, 1, 1))]), 8

    assert _params(middle) == 3 * 8


def test_conv_transpose_macs():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        w = g.rand("up.w", (8, 6, 2, 2))
        return g.op("ConvTranspose", [x, w], kernel_shape=[2, 2], strides=[2, 2]), 6

    cost = count_cost(sandwich(middle))
    up = 1 * 8 * 64 * 6 * 4  # N * Cin * H * W * Cout * kH * kW
    conv_b = 6 * 256 * 6 * 9  # conv_b now reads 6 channels at 16x16
    assert cost.macs == 8 * 64 * 27 + up + conv_b + 60
