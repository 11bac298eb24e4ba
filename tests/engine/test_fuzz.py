"""Property: any random CNN graph (tests/engine/fuzz_graphs.py), pruned with random importances
and a random policy, gives a valid, smaller model that equals the masked oracle.

Runs ``ONNXRECEDE_FUZZ_EXAMPLES`` examples (default 200, derandomised so that CI is
reproducible; set ``ONNXRECEDE_FUZZ_RANDOM=1`` to explore new ones). A failing example is
shrunk by hypothesis and its spec written to ``tests/engine/fuzz_regressions/pending.json``:
rename the file after the bug it found and it runs in :func:`test_regression` from then on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from hypothesis import HealthCheck, given, settings

import onnxrecede
from tests.engine.fuzz_graphs import Spec, build, random_importances, specs
from tests.engine.oracle import assert_equals_masked_oracle

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
EXAMPLES = int(os.environ.get("ONNXRECEDE_FUZZ_EXAMPLES", "200"))


def check(spec: Spec) -> None:
    model = build(spec)
    onnx.checker.check_model(model, full_check=True)
    imp = random_importances(model, spec["imp_seed"])
    pruned, report = onnxrecede.prune(model, imp, **spec["policy"])  # verifies
    assert report.verification["masked_reference"] == "passed"
    onnx.checker.check_model(ir.serde.serialize_model(pruned), full_check=True)
    if report.channels_removed:
        assert report.params_after < report.params_before
        assert report.removed_channels
    else:
        assert report.params_after == report.params_before
    removed = sum(g.removed for g in report.groups)
    assert removed == report.channels_removed
    assert_equals_masked_oracle(model, pruned, imp, **spec["policy"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("ONNXRECEDE_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(specs())
def test_random_graphs_equal_the_masked_oracle(spec):
    try:
        check(spec)
    except Exception:
        # the last failing call is the shrunk example: keep it for a regression test
        REGRESSIONS.mkdir(exist_ok=True)
        (REGRESSIONS / "pending.json").write_text(json.dumps(spec, indent=1) + "\n")
        raise


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.json")), ids=lambda p: p.stem)
def test_regression(path):
    check(json.loads(path.read_text()))
