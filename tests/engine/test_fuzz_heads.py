"""Property: random attention blocks (tests/models/attention.py: head counts, head dims, batch,
fused or separate projections, MultiheadAttention's layout, masks, a scale from the shape),
pruned by whole heads or by head dims with random importances and policy, equal the masked
oracle, keep a rectangular (heads, head_dim) layout, and lose exactly what the plan removed.

``ONNXRECEDE_FUZZ_HEADS_EXAMPLES`` examples (default 40, derandomised).
"""

from __future__ import annotations

import os

import numpy as np
import onnx_ir as ir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onnxrecede
from tests.engine.oracle import assert_equals_masked_oracle
from tests.models.attention import LAYOUTS, AttentionSpec, attention_model

EXAMPLES = int(os.environ.get("ONNXRECEDE_FUZZ_HEADS_EXAMPLES", "40"))


@st.composite
def cases(draw: st.DrawFn) -> tuple[AttentionSpec, dict, int]:
    spec = AttentionSpec(
        heads=draw(st.integers(1, 5)),
        head_dim=draw(st.integers(1, 4)),
        tokens=draw(st.integers(1, 4)),
        batch=draw(st.integers(1, 2)),
        layout=draw(st.sampled_from(LAYOUTS)),
        mask=draw(st.sampled_from([None, "broadcast", "full"])),
        scale=draw(st.sampled_from(["const", "shape"])),
        seed=draw(st.integers(0, 3)),
    )
    policy = {
        "ratio": draw(st.sampled_from([0.25, 0.5, 0.75])),
        "scope": draw(st.sampled_from(["global", "local"])),
        "aggregate": draw(st.sampled_from(["max", "mean", "sum"])),
        "head_units": draw(st.sampled_from(["heads", "dims"])),
    }
    return spec, policy, draw(st.integers(0, 1000))


def _importances(spec: AttentionSpec, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(0, 1, n).tolist() for k, n in spec.projections().items()}


def _kept(spec: AttentionSpec, removed: list[int], unit: str) -> tuple[set[int], set[int]]:
    """The kept heads and dims read off the removed channels of one part (q, or the first)."""
    gone = [c for c in removed if c < spec.width]
    heads = {c // spec.head_dim for c in gone}
    dims = {c % spec.head_dim for c in gone}
    if unit == "heads":
        return set(range(spec.heads)) - heads, set(range(spec.head_dim))
    return set(range(spec.heads)), set(range(spec.head_dim)) - dims


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
@given(cases())
def test_random_attention_blocks_equal_the_masked_oracle(case):
    spec, policy, seed = case
    model = attention_model(spec)
    imp = _importances(spec, seed)
    pruned, report = onnxrecede.prune(model, imp, **policy)
    assert report.verification["masked_reference"] == "passed"
    assert_equals_masked_oracle(model, pruned, imp, **policy)
    key = next(iter(spec.projections()))
    removed = report.removed_channels.get(key, [])
    heads, dims = _kept(spec, removed, policy["head_units"])
    assert heads and dims  # at least one head and one dim stay
    # the q (first) part keeps exactly kept heads x kept dims: a rectangular layout
    want = sorted(h * spec.head_dim + d for h in heads for d in dims)
    kept = sorted(set(range(spec.width)) - {c for c in removed if c < spec.width})
    assert kept == want
    node = next(n for n in pruned.graph if n.name == key)
    weight = node.inputs[1].const_value
    assert isinstance(weight, ir.TensorProtocol)
    assert weight.shape[1] == (spec.width - len(removed) if key != "qkv" else 3 * len(want))
