"""Attention heads: rules/heads.py (Reshape splitting the channel axis into heads), the
activation MatMul (rules/activation_matmul.py) and the masked reference's activation masks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxrecede
from onnxrecede.errors import InputError
from onnxrecede.report.reports import format_inspect
from tests.engine.oracle import assert_equals_masked_oracle
from tests.models.attention import (
    LAYOUTS,
    AttentionSpec,
    attention_model,
    dim_importances,
    head_importances,
)

#: heads 1 and 3 score lowest: at ratio 0.5 they go
HEAD_SCORES = [0.9, 0.1, 0.8, 0.2]
#: dims 0 and 2 score lowest
DIM_SCORES = [0.1, 0.9, 0.2, 0.8]


def _const(model, name: str) -> list[int]:
    node = next(n for n in model.graph if n.name == name)
    return node.inputs[1].const_value.numpy().ravel().tolist()


def _weight(model, name: str) -> tuple[int, ...]:
    node = next(n for n in model.graph if n.name == name)
    return tuple(node.inputs[1].const_value.shape)


def _channels(spec: AttentionSpec, units: list[int], per: str) -> list[int]:
    """Channel indices of a projection of ``per`` parts for the removed heads (or dims)."""
    h, d, c = spec.heads, spec.head_dim, spec.width
    parts = [0] if spec.layout == "separate" or per == "one" else [0, 1, 2]
    return sorted(
        p * c + head * d + dim
        for p in parts
        for head in range(h)
        for dim in range(d)
        if (head in units if per != "dims" else dim in units)
    )


def _prune(spec: AttentionSpec, imp, **policy):
    model = attention_model(spec)
    pruned, report = onnxrecede.prune(model, imp, ratio=0.5, **policy)
    assert report.verification["masked_reference"] == "passed"
    assert_equals_masked_oracle(model, pruned, imp, ratio=0.5, **policy)
    return pruned, report


@pytest.mark.parametrize("layout", LAYOUTS)
def test_whole_heads_are_removed(layout):
    spec = AttentionSpec(layout=layout)
    pruned, report = _prune(spec, head_importances(spec, HEAD_SCORES))
    removed = _channels(spec, [1, 3], "heads")
    for key in spec.projections():
        want = removed if key == "qkv" else _channels(spec, [1, 3], "one")
        assert report.removed_channels[key] == want
        assert _weight(pruned, key)[1] == spec.width * (3 if key == "qkv" else 1) // 2
    proj = _weight(pruned, "proj")
    assert proj[1 if layout == "mha" else 0] == 8  # the rows of the removed heads are gone
    group = next(g for g in report.groups if g.status == "pruned")
    assert (group.size, group.removed) == (4, 2)  # a head is one unit
    block = "qkv" if layout != "separate" else "q, k, v"
    assert report.removed_heads == {block: [1, 3]}
    assert report.removed_head_dims == {}
    if layout in ("split", "gather", "slice"):
        assert _const(pruned, "qkv_split") == [2, 5, 3, 2, 4]
    if layout == "separate":
        assert _const(pruned, "q_split") == [2, 5, 2, 4]
    if layout == "mha":
        assert _const(pruned, "heads0") == [5, 2 * 2, 4]  # batch x kept heads
        assert _const(pruned, "merge") == [10, 8]
    else:
        assert _const(pruned, "merge") == [2, 5, 8]


@pytest.mark.parametrize("mask", ["broadcast", "full"])
@pytest.mark.parametrize("layout", ["split", "separate", "mha"])
def test_heads_with_a_mask_added_to_the_scores(layout, mask):
    spec = AttentionSpec(layout=layout, mask=mask)
    pruned, _ = _prune(spec, head_importances(spec, HEAD_SCORES))
    node = next(n for n in pruned.graph if n.name == "masked")
    shape = tuple(node.inputs[1].const_value.shape)
    if mask == "full":  # a per-head mask loses the removed heads' rows
        assert shape == ((4, 5, 5) if layout == "mha" else (2, 2, 5, 5))
    else:
        assert shape == ((1, 5, 5) if layout == "mha" else (1, 1, 5, 5))


def test_head_dims_of_q_and_k_apart_from_v():
    spec = AttentionSpec(layout="separate")
    imp = dim_importances(spec, DIM_SCORES)
    imp["v"] = np.tile([0.9, 0.1, 0.8, 0.2], 4).tolist()  # v loses other dims than q and k
    pruned, report = _prune(spec, imp, head_units="dims")
    qk = _channels(spec, [0, 2], "dims")
    assert report.removed_channels["q"] == report.removed_channels["k"] == qk
    assert report.removed_channels["v"] == _channels(spec, [1, 3], "dims")
    assert _const(pruned, "q_split") == [2, 5, 4, 2]
    assert _weight(pruned, "proj")[0] == 8
    sizes = sorted((g.size, g.removed) for g in report.groups if g.status == "pruned")
    assert sizes == [(4, 2), (4, 2)]  # q/k dims and v dims: two groups of head_dim units
    assert report.removed_head_dims == {"q, k": [0, 2], "v": [1, 3]}
    assert report.removed_heads == {}


@pytest.mark.parametrize("layout", ["split", "mha"])
def test_head_dims_of_a_fused_projection_move_together(layout):
    """The fused [3, H, D] reshape must stay rectangular: q, k and v lose the same dims."""
    spec = AttentionSpec(layout=layout)
    _, report = _prune(spec, dim_importances(spec, DIM_SCORES), head_units="dims")
    assert report.removed_channels["qkv"] == _channels(spec, [0, 2], "dims")


def test_a_scale_computed_from_the_shape_stays_the_exported_constant():
    spec = AttentionSpec(layout="separate", scale="shape")
    pruned, _ = _prune(spec, dim_importances(spec, DIM_SCORES), head_units="dims")
    node = next(n for n in pruned.graph if n.name == "q_scaled")
    assert node.inputs[1].const_value.numpy().ravel().tolist() == [0.5]  # 1/sqrt(4), not 1/sqrt(2)


@pytest.mark.parametrize("units", ["heads", "dims"])
@pytest.mark.parametrize("layout", ["split", "separate"])
def test_a_dynamic_batch_with_shapes_built_at_run_time(layout, units):
    """The (heads, head_dim) entries live in a Concat piece next to Shape(input)[:1]."""
    spec = AttentionSpec(layout=layout, dynamic_batch=True)
    imp = (
        head_importances(spec, HEAD_SCORES)
        if units == "heads"
        else dim_importances(spec, DIM_SCORES)
    )
    pruned, report = _prune(spec, imp, head_units=units)
    assert report.removed_heads or report.removed_head_dims
    piece = "qkv_shape" if layout == "split" else "q_shape"
    want = {
        ("split", "heads"): [5, 3, 2, 4],
        ("separate", "heads"): [5, 2, 4],
        ("split", "dims"): [5, 3, 4, 2],
        ("separate", "dims"): [5, 4, 2],
    }[layout, units]
    assert pruned.graph.initializers[piece].const_value.numpy().tolist() == want
    cat = next(n for n in pruned.graph if n.name == "merge_cat")
    assert cat.inputs[2].const_value.numpy().tolist() == [8]  # was Shape(input)[2:3], 16


def test_head_units_are_checked():
    with pytest.raises(InputError, match="head units must be one of heads, dims"):
        onnxrecede.inspect(attention_model(AttentionSpec()), head_units="rows")


# ---- barriers


def _barrier(model: onnx.ModelProto, op_type: str, node: str, pattern: str, **kw) -> None:
    info = onnxrecede.inspect(model, **kw)
    found = [b for b in info.barriers if b["op_type"] == op_type and b["node"] == node]
    assert found, info.barriers
    assert any(__import__("re").search(pattern, b["reason"]) for b in found), found
    assert all(g.status != "pruned" for g in info.groups)
    group = next(g for g in info.groups if "q" in g.producers or "qkv" in g.producers)
    assert group.status == "blocked"


def _untracked_key(spec: AttentionSpec) -> onnx.ModelProto:
    """k is the input itself, split into heads: its channels are not traced."""
    model = attention_model(spec)
    for node in model.graph.node:
        if node.name == "k_split":
            node.input[0] = "input"
    return model


def test_barrier_scores_against_untraced_heads():
    model = _untracked_key(AttentionSpec(layout="separate"))
    _barrier(
        model, "MatMul", "scores", r"other operand has untraced channels on the same batch axis"
    )


def test_barrier_contracting_traced_dims_with_untraced_ones():
    model = _untracked_key(AttentionSpec(layout="separate"))
    _barrier(
        model, "MatMul", "scores", r"contracts channels of one operand only", head_units="dims"
    )


def test_barrier_split_into_more_than_heads_and_dims():
    """The parts axis is not indexed away (a Reshape reads it): three split axes."""
    spec = AttentionSpec(layout="split")
    model = attention_model(spec)
    nodes = [n for n in model.graph.node]
    perm = next(n for n in nodes if n.name == "qkv_perm")
    flat = helper.make_node("Reshape", ["qkv_perm_out", "flat_shape"], ["flat_out"], name="flat")
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.asarray([-1], np.int64), "flat_shape")
    )
    model.graph.node.insert(nodes.index(perm) + 1, flat)
    model.graph.output.append(
        helper.make_tensor_value_info("flat_out", onnx.TensorProto.FLOAT, None)
    )
    _barrier(model, "Reshape", "qkv_split", r"more than \(heads, head_dim\)")


def test_inspect_says_why_an_attention_block_is_blocked():
    info = onnxrecede.inspect(_untracked_key(AttentionSpec(layout="separate")))
    blocks = {b["block"]: b for b in info.attention}
    assert sorted(blocks) == ["q", "v"]  # the scores barrier leaves q and v apart
    for name, at in (("q", "scores"), ("v", "context")):
        assert (blocks[name]["units"], blocks[name]["count"]) == ("heads", 4)
        assert blocks[name]["status"] == "blocked"
        assert any(
            b["node"] == at and "untraced channels on the same batch axis" in b["reason"]
            for b in blocks[name]["barriers"]
        )
    assert "attention blocks:\n  q: 4 heads, blocked\n    MatMul 'scores'" in format_inspect(info)
