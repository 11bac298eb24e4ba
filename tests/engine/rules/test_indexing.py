"""Rules in onnxrecede/engine/rules/indexing.py: Concat, Split, Slice, Gather, Pad."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxrecede
from tests.engine.rules.helpers import (
    SYMBOLIC_BATCH,
    assert_barrier,
    assert_oracle_at_batch,
    const,
    prune_through,
    sandwich,
    weight_shape,
)
from tests.models.handmade import GraphBuilder


def _ints(g: GraphBuilder, name: str, values) -> str:
    return const(g, name, np.asarray(values, np.int64))


def test_concat_on_channels_offsets_labels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        other = g.conv("input", "conv_c", 3, 4)
        return g.op("Concat", [other, x], name="cat", axis=1), 12

    pruned, report = prune_through(sandwich(middle))
    assert "conv_c" not in report.removed_channels


def test_concat_with_a_constant_part():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        zeros = g.rand("extra", (1, 2, 8, 8))
        return g.op("Concat", [x, zeros], name="cat", axis=1), 10

    pruned, _ = prune_through(sandwich(middle))
    assert weight_shape(pruned, "conv_b")[1] == 6


def test_concat_on_another_axis_couples_inputs():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        other = g.conv("input", "conv_c", 3, 8)
        y = g.op("Concat", [x, other], name="cat", axis=2)  # [1, 8, 16, 8]
        return g.op("MaxPool", [y], kernel_shape=[2, 1], strides=[2, 1]), 8

    _, report = prune_through(sandwich(middle))
    assert report.removed_channels["conv_c"] == [1, 3, 5, 7]


def test_concat_barrier_channels_on_different_axes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        moved = g.op("Transpose", [g.conv("input", "conv_c", 3, 8)], perm=[0, 2, 1, 3])
        return g.op("Concat", [x, moved], name="cat", axis=3), 8

    assert_barrier(sandwich(middle), "Concat", "cat", r"different axes")


def test_concat_barrier_untraced_input():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        noise = g.op("RandomNormalLike", [x], name="noise")
        return g.op("Concat", [x, noise], name="cat", axis=2), 8

    assert_barrier(sandwich(middle), "Concat", "cat", r"channels onnxrecede cannot trace")


def _split_model(opset: int, with_sizes: bool):
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        if with_sizes:
            parts = g.multi("Split", [x, _ints(g, "sizes", [3, 5])], 2, name="split", axis=1)
        else:
            parts = g.multi("Split", [x], 2, name="split", axis=1, num_outputs=2)
        branches = [g.conv(p, f"branch{i}", 3 if with_sizes and i == 0 else (5 if with_sizes else 4), 4)
                    for i, p in enumerate(parts)]  # fmt: skip
        return g.op("Concat", branches, name="cat", axis=1), 8

    return sandwich(middle, opset=opset)


@pytest.mark.parametrize(("opset", "with_sizes", "kept"), [(13, True, [2, 2]), (18, False, [2, 2])])
def test_split_on_channels_rewrites_sizes(opset, with_sizes, kept):
    pruned, _ = prune_through(_split_model(opset, with_sizes), consumer=None)
    assert [weight_shape(pruned, f"branch{i}")[1] for i in range(2)] == kept
    split = next(n for n in pruned.graph if n.name == "split")
    assert split.inputs[1].const_value.numpy().tolist() == kept


def test_split_opset11_attribute():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        a, b = g.multi("Split", [x], 2, name="split", axis=1, split=[3, 5])
        return g.op("Concat", [g.conv(a, "branch0", 3, 4), g.conv(b, "branch1", 5, 4)], axis=1), 8

    pruned, _ = prune_through(sandwich(middle, opset=11), consumer=None)
    split = next(n for n in pruned.graph if n.name == "split")
    assert list(split.attributes["split"].value) == [2, 2]


def test_split_on_another_axis_passes_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        a, b = g.multi("Split", [x, _ints(g, "sizes", [4, 4])], 2, name="split", axis=2)
        return g.op("Concat", [a, b], axis=2), 8

    prune_through(sandwich(middle))


def test_split_barrier_sizes_do_not_add_up():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        a, b = g.multi("Split", [x, _ints(g, "sizes", [3, 3])], 2, name="split", axis=1)
        return g.op("Concat", [a, b], axis=1), 6

    assert_barrier(
        sandwich(middle), "Split", "split", r"split sizes are not constant or do not add up"
    )


def test_slice_on_channels_rewrites_bounds():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        args = [_ints(g, n, v) for n, v in (("st", [2]), ("en", [7]), ("ax", [1]), ("sp", [1]))]
        return g.op("Slice", [x, *args], name="slice"), 5

    pruned, _ = prune_through(sandwich(middle), consumer_channels=3)  # 2..6 minus 3 and 5
    node = next(n for n in pruned.graph if n.name == "slice")
    assert node.inputs[1].const_value.numpy().tolist() == [1]
    assert node.inputs[2].const_value.numpy().tolist() == [4]


def test_slice_opset9_attributes():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Slice", [x], name="slice", starts=[2], ends=[7], axes=[1]), 5

    pruned, _ = prune_through(sandwich(middle, opset=9), consumer_channels=3)
    node = next(n for n in pruned.graph if n.name == "slice")
    assert list(node.attributes["starts"].value) == [1] and list(node.attributes["ends"].value) == [
        4
    ]


def test_slice_on_another_axis_passes_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        args = [_ints(g, n, v) for n, v in (("st", [0]), ("en", [4]), ("ax", [2]))]
        return g.op("Slice", [x, *args], name="slice"), 8

    prune_through(sandwich(middle))


def test_slice_barrier_step():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        args = [_ints(g, n, v) for n, v in (("st", [0]), ("en", [8]), ("ax", [1]), ("sp", [2]))]
        return g.op("Slice", [x, *args], name="slice"), 4

    assert_barrier(sandwich(middle), "Slice", "slice", r"step other than 1")


def test_slice_barrier_runtime_bounds():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        end = g.op("Cast", [g.op("RandomUniform", [], shape=[1], low=6.0, high=6.5)], to=7)
        return g.op("Slice", [x, _ints(g, "st", [0]), end, _ints(g, "ax", [1])], name="slice"), 6

    assert_barrier(sandwich(middle), "Slice", "slice", r"bounds are computed at run time")


def test_gather_on_channels_rewrites_indices():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Gather", [x, _ints(g, "idx", [0, 2, 3, 6, 7])], name="gather", axis=1), 5

    pruned, _ = prune_through(sandwich(middle), consumer_channels=3)
    node = next(n for n in pruned.graph if n.name == "gather")
    assert node.inputs[1].const_value.numpy().tolist() == [0, 1, 3]


def test_gather_on_another_axis_passes_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Gather", [x, _ints(g, "idx", [0, 2, 3, 6])], name="gather", axis=3), 8

    pruned, _ = prune_through(sandwich(middle))
    node = next(n for n in pruned.graph if n.name == "gather")
    assert node.inputs[1].const_value.numpy().tolist() == [0, 2, 3, 6]


def test_gather_barrier_runtime_indices():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        idx = g.op("Cast", [g.op("RandomUniform", [], shape=[4], low=0.0, high=3.0)], to=7)
        return g.op("Gather", [x, idx], name="gather", axis=1), 4

    assert_barrier(sandwich(middle), "Gather", "gather", r"non-constant or non-1-D indices")


def test_pad_on_channels_adds_removable_pad_channels():
    """Option-A shortcut: 2 + 2 zero channels around conv_a's 8."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        pads = _ints(g, "pads", [0, 2, 0, 0, 0, 2, 0, 0])
        return g.op("Pad", [x, pads], name="pad", mode="constant"), 12

    pruned, _ = prune_through(sandwich(middle))
    node = next(n for n in pruned.graph if n.name == "pad")
    assert node.inputs[1].const_value.numpy().tolist() == [0, 2, 0, 0, 0, 2, 0, 0]


def test_pad_channels_are_pruned_with_their_group():
    """A residual Add couples the pad channels with conv_c: pruning removes some of them."""

    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Pad", [x, _ints(g, "pads", [0, 2, 0, 0, 0, 2, 0, 0])], name="pad")
        return g.op("Add", [y, g.conv("input", "conv_c", 3, 12)], name="res"), 12

    # group position p = conv_c channel p = conv_a channel p - 2; max aggregation
    imp = {
        "conv_a": [1, 1, 0.2, 0.2, 0.2, 1, 1, 1],
        "conv_c": [0.9, 0.1, 0.2, 0.8, 0.5, 0.6, 0.7, 0.3, 0.95, 0.4, 0.05, 0.99],
    }
    pruned, report = onnxrecede.prune(sandwich(middle), imp, ratio=0.5)
    assert report.removed_channels["conv_c"] == [0, 1, 4, 5, 6, 10]
    assert report.removed_channels["conv_a"] == [2, 3, 4]
    node = next(n for n in pruned.graph if n.name == "pad")
    assert node.inputs[1].const_value.numpy().tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    from tests.engine.oracle import assert_equals_masked_oracle

    assert_equals_masked_oracle(sandwich(middle), pruned, imp, ratio=0.5)


def test_pad_spatial_with_axes_input():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        pads = _ints(g, "pads", [1, 1, 1, 1])
        return g.op("Pad", [x, pads, "", _ints(g, "axes", [2, 3])], name="pad"), 8

    prune_through(sandwich(middle))


def test_pad_opset2_attribute():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        return g.op("Pad", [x], name="pad", pads=[0, 1, 0, 0, 0, 1, 0, 0]), 10

    pruned, _ = prune_through(sandwich(middle, opset=9))
    node = next(n for n in pruned.graph if n.name == "pad")
    assert list(node.attributes["pads"].value) == [0, 1, 0, 0, 0, 1, 0, 0]


def test_pad_barrier_reflect_on_channels():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        pads = _ints(g, "pads", [0, 1, 0, 0, 0, 1, 0, 0])
        return g.op("Pad", [x, pads], name="pad", mode="reflect"), 10

    assert_barrier(sandwich(middle), "Pad", "pad", r"non-constant mode or crops")


def test_pad_barrier_runtime_pads():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        pads = g.op("Cast", [g.op("RandomUniform", [], shape=[8], low=0.0, high=0.5)], to=7)
        return g.op("Pad", [x, pads], name="pad"), 8

    assert_barrier(sandwich(middle), "Pad", "pad", r"pads are computed at run time")


def test_concat_on_another_axis_slices_constant_inputs():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        y = g.op("Concat", [x, g.rand("rows", (1, 8, 2, 8))], name="cat", axis=2)  # [1, 8, 10, 8]
        return g.op("MaxPool", [y], kernel_shape=[3, 1], strides=[1, 1]), 8

    pruned, _ = prune_through(sandwich(middle))
    cat = next(n for n in pruned.graph if n.name == "cat")
    assert cat.inputs[1].const_value.shape == (1, 4, 2, 8)


def _shape_entry(g: GraphBuilder, x: str, axis: int) -> str:
    return g.op("Gather", [g.op("Shape", [x]), _ints(g, f"dim{axis}", [axis])], axis=0)


def test_slice_bounds_read_from_a_known_dim_beside_a_symbolic_batch():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        args = [_ints(g, "st", [2]), _shape_entry(g, x, 1), _ints(g, "ax", [1])]  # 2..C
        return g.op("Slice", [x, *args], name="slice"), 6

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    pruned, _ = prune_through(model, consumer_channels=3)  # 2..7 minus 3, 5, 7
    assert_oracle_at_batch(model, pruned, 3)


def test_slice_barrier_bounds_from_a_symbolic_dim_names_shape():
    def middle(g: GraphBuilder, x: str) -> tuple[str, int]:
        args = [_ints(g, "st", [0]), _shape_entry(g, x, 0), _ints(g, "ax", [0])]  # 0..N
        return g.op("Slice", [x, *args], name="slice"), 8

    model = sandwich(middle, batch=SYMBOLIC_BATCH)
    assert_barrier(
        model,
        "Slice",
        "slice",
        r"^its bounds are computed at run time from dims known only then \(N is symbolic\); "
        r"give the input dims with --shape NAME:DIMS \(dynamic inputs: input \[N, 3, 8, 8\]\)$",
    )
    prune_through(model, input_shapes={"input": (1, 3, 8, 8)})


def test_concat_barrier_symbolic_channel_count_names_shape():
    def build():
        g = GraphBuilder()
        x = g.conv("input", "conv_a", 3, 8)
        y = g.op("Concat", [x, "extra"], name="cat", axis=1)
        model = g.model(g.op("ReduceMean", [y, _ints(g, "ax", [1])]), (1, 1, 8, 8), 21)
        model.graph.input.append(
            onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, [1, "K", 8, 8])
        )
        return model

    assert_barrier(
        build(),
        "Concat",
        "cat",
        r"^input 'extra' has an unknown channel count \(K is symbolic\); give the input dims "
        r"with --shape NAME:DIMS \(dynamic inputs: extra \[1, K, 8, 8\]\)$",
    )
