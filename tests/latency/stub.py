"""A stubbed latency table: staircase curves computed, not measured (no timing in tests)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from onnxrecede.io.model_files import load_model
from onnxrecede.latency.table import FORMAT, VERSION, analysed, bound_shapes, fingerprint
from onnxrecede.latency.units import Axis, Unit, find_units, grid_points

STEP = 8


def staircase(k: int, size: int) -> float:
    """Cost proportional to the kept count rounded up to a multiple of STEP."""
    return min(math.ceil(k / STEP) * STEP, size) / size


def stub_table(path: Path, max_points: int = 32) -> dict[str, Any]:
    model = load_model(path)
    shapes = bound_shapes(model, None, 1)
    printed = fingerprint(model)
    analysis = analysed(model, shapes)
    rows = []
    for unit in find_units(analysis):
        full = 1.0 + 0.1 * unit.index  # some layers cost more than others
        rows.append({
            "node": unit.name, "op": unit.node.op_type, "followers": [], "depthwise": unit.depthwise,
            "full_ms": full, "out": _axis(unit.out, full, max_points),
            "in": _axis(unit.inp, full, max_points),
        })  # fmt: skip
    return {
        "format": FORMAT, "version": VERSION, "model": str(path), "model_fingerprint": printed,
        "input_shapes": {k: list(v) for k, v in shapes.items()}, "batch": 1,
        "machine": {"provider": "cpu", "device": "stub", "threads": 1}, "max_points": max_points,
        "model_ms": 10.0, "units_ms": sum(r["full_ms"] for r in rows), "units": rows, "groups": [],
    }  # fmt: skip


def _axis(axis: Axis | None, full: float, max_points: int) -> dict[str, Any] | None:
    if axis is None:
        return None
    row: dict[str, Any] = {"channels": axis.size, "groups": {}}
    if axis.variable:
        row["curve"] = [
            [k, full * staircase(k, axis.size)] for k in grid_points(axis.size, max_points)
        ]
    return row


def predicted(table: dict[str, Any], unit_counts: dict[str, tuple[int, int]]) -> float:
    """Fraction of the summed unit latency at given (kept out, kept in) per unit."""
    total = 0.0
    for row in table["units"]:
        k_out, k_in = unit_counts[row["node"]]
        value = row["full_ms"]
        if row["out"] and "curve" in row["out"]:
            value *= staircase(k_out, row["out"]["channels"])
        if row["in"] and "curve" in row["in"]:
            value *= staircase(k_in, row["in"]["channels"])
        total += value
    return total / table["units_ms"]


__all__ = ["Unit", "predicted", "stub_table"]
