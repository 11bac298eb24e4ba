"""What ``prune`` needs of a latency target: the checked options, and one measurement of the cut.

Cases:
1. ``--target-latency F`` needs ``--latency-table``; ``--target-speedup X`` with a table is
   ``--target-latency 1/X``; a table without either target is refused.
2. After the rewrite, the original and the pruned model are timed once, interleaved, on the
   table's provider, batch, shapes and threads (``bench``'s comparison), and the measured
   fraction and speedup go into the report beside the predicted ones. Where that provider
   cannot run, the report says why and nothing is measured.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxrecede.checks import finite_number
from onnxrecede.errors import InputError, RuntimeUnavailableError
from onnxrecede.latency.table import load_table
from onnxrecede.policy.latency import LatencyTarget

logger = logging.getLogger(__name__)

MEASURE_SECONDS = 3.0


def latency_target(
    table: str | os.PathLike[str] | Mapping[str, Any] | None,
    target_latency: float | None,
    target_speedup: float | None,
) -> LatencyTarget | None:
    """Case 1: the target, or None when no latency table is used."""
    if table is None:
        if target_latency is not None:
            raise InputError(
                "--target-latency needs --latency-table TABLE.json (measure one with "
                "`onnxrecede latency MODEL -o TABLE.json`)"
            )
        return None
    if target_latency is None and target_speedup is None:
        raise InputError("--latency-table needs --target-latency F or --target-speedup X")
    if target_latency is not None:
        finite_number("--target-latency", target_latency)
    if target_speedup is not None:
        finite_number("--target-speedup", target_speedup)
        if not target_speedup > 1.0:
            raise InputError(f"--target-speedup must be above 1 (a speedup), got {target_speedup}")
        target_latency = 1.0 / target_speedup
    assert target_latency is not None
    if not 0.0 < target_latency < 1.0:
        raise InputError(f"--target-latency must be in (0, 1), got {target_latency}")
    if isinstance(table, Mapping):
        return LatencyTarget(dict(table), target_latency, "<table>")
    return LatencyTarget(load_table(table), target_latency, os.fspath(table))


def measure_cut(
    reference: ir.Model,
    pruned: ir.Model,
    table: Mapping[str, Any],
    seconds: float = MEASURE_SECONDS,
) -> dict[str, Any]:
    """Case 2: measured latencies of the original and the cut, on the table's set-up."""
    from onnxrecede.bench import BenchOptions, compare
    from onnxrecede.io.model_files import save_model

    machine = table.get("machine", {})
    options = BenchOptions(
        providers=(str(machine.get("provider", "cpu")),),
        batches=(int(table.get("batch", 1)),),
        shapes={k: tuple(int(d) for d in v) for k, v in table.get("input_shapes", {}).items()},
        threads=machine.get("threads"),
        seconds=seconds,
        bootstrap=500,
    )
    with tempfile.TemporaryDirectory(prefix="onnxrecede-latency-") as tmp:
        ref_path, cut_path = Path(tmp) / "reference.onnx", Path(tmp) / "pruned.onnx"
        save_model(reference, ref_path)
        save_model(pruned, cut_path)
        try:
            result = compare(ref_path, cut_path, options)
        except RuntimeUnavailableError as e:
            logger.warning("warning: the cut was not measured: %s", e)
            return {"measured": None, "not_measured_because": str(e)}
    config = result.configurations[0]
    ref_ms, cut_ms = 1e3 * config.latency[0].median, 1e3 * config.latency[1].median
    speedup = config.comparisons[0].speedup
    return {
        "measured_reference_ms": ref_ms,
        "measured_ms": cut_ms,
        "measured_fraction": cut_ms / ref_ms if ref_ms > 0 else None,
        "measured_speedup": speedup.value,
        "measured_seconds": seconds,
    }
