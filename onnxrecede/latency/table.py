"""The latency table of a model (``onnxrecede latency``): its format, how it is built and read.

Cases:
1. The model's inputs are bound (``--shape``, a dynamic first dim to ``--batch``) and analysed
   once; every unit (:mod:`onnxrecede.latency.units`) is measured at full width, along each
   variable axis at the grid of kept counts (:func:`~onnxrecede.latency.units.grid_points`)
   with the other axis full, each point a small model of its own
   (:mod:`onnxrecede.latency.extract`) looked up in the cache first.
2. The whole model is measured once (``model_ms``); ``units_ms`` is the sum of the units at
   full width.
3. The file records the machine (provider, device name, CPU model, cores, threads,
   onnxruntime version) and a fingerprint of the model, checked when a prune reads the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxrecede.checks import whole_number
from onnxrecede.engine.analysis import Analysis, analyze
from onnxrecede.engine.cost import bind_inputs
from onnxrecede.errors import InputError
from onnxrecede.io.model_files import load_model
from onnxrecede.latency.cache import LatencyCache, cache_key
from onnxrecede.latency.extract import _flag, unit_model
from onnxrecede.latency.measure import Device, Timing, interleaved_ms
from onnxrecede.latency.units import Unit, find_units, grid_points
from onnxrecede.runtime.session import check_shape_specs, random_inputs, resolve_input_shape

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
FORMAT = "onnxrecede.latency-table"
VERSION = 1
#: most kept counts measured per axis (the grid coarsens beyond)
DEFAULT_MAX_POINTS = 32
WHOLE_MODEL_SECONDS = 2.0


def bound_shapes(
    model: ir.Model, shapes: Mapping[str, Sequence[int]] | None, batch: int
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the model's inputs (``--shape`` first, a dynamic first dim = batch)."""
    graph = model.graph
    inits = set(graph.initializers)
    inputs = [(v.name or "", list(v.shape or [])) for v in graph.inputs if v.name not in inits]
    check_shape_specs(inputs, shapes)
    return {
        name: resolve_input_shape(name, [d if isinstance(d, int) else None for d in dims],
                                  shapes or {}, batch)
        for name, dims in inputs
    }  # fmt: skip


def analysed(model: ir.Model, shapes: Mapping[str, Sequence[int]]) -> Analysis:
    """Bind ``shapes`` to the inputs, then analyse (units need static shapes)."""
    bind_inputs(model.graph, shapes)
    return analyze(model)


def fingerprint(model: ir.Model) -> str:
    """Node names and op types, initializer names and shapes: which model a table is for."""
    parts: list[Any] = [[n.name, n.op_type] for n in model.graph]
    for name, value in sorted(model.graph.initializers.items()):
        shape = value.const_value.shape if value.const_value is not None else value.shape
        dims = [str(d) for d in shape] if shape is not None else None
        parts.append([name, dims])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _in_for(unit: Unit, k_out: int) -> int:
    """Depthwise: the input count that gives ``k_out`` outputs (multiplier kept)."""
    assert unit.out is not None
    full_in = _full(unit.inp) if unit.inp is not None else unit.out.size
    if unit.depthwise:
        multiplier = max(1, unit.out.size // max(1, _depthwise_in(unit)))
        return max(1, k_out // multiplier)
    return full_in


def _depthwise_in(unit: Unit) -> int:
    shape = unit.node.inputs[0].shape if unit.node.inputs[0] is not None else None
    return int(shape[1]) if shape is not None and isinstance(shape[1], int) else 1


def _full(axis: Any) -> int:
    return int(axis.size)


@dataclass
class _Point:
    unit: Unit
    k_in: int
    k_out: int


def _points(unit: Unit, max_points: int) -> dict[str, list[tuple[int, int]]]:
    """The (k_in, k_out) measured for a unit: full, along out, along in."""
    k_out_full = unit.out.size if unit.out is not None else _out_size(unit)
    k_in_full = _in_for(unit, k_out_full) if unit.depthwise else (
        unit.inp.size if unit.inp is not None else _in_size(unit)
    )  # fmt: skip
    pts: dict[str, list[tuple[int, int]]] = {"full": [(k_in_full, k_out_full)]}
    if unit.out is not None and unit.out.variable:
        pts["out"] = [
            (_in_for(unit, k) if unit.depthwise else k_in_full, k)
            for k in grid_points(unit.out.size, max_points)
        ]
    if unit.inp is not None and unit.inp.variable:
        pts["in"] = [(k, k_out_full) for k in grid_points(unit.inp.size, max_points)]
    return pts


def _out_size(unit: Unit) -> int:
    shape = unit.node.outputs[0].shape
    assert shape is not None
    axis = 1 if unit.node.op_type.startswith("Conv") else len(shape) - 1
    return int(shape[axis])  # type: ignore[arg-type]


def _in_size(unit: Unit) -> int:
    shape = unit.node.inputs[0].shape  # type: ignore[union-attr]
    assert shape is not None
    op = unit.node.op_type
    axis = (0 if _flag(unit.node, "transA") else 1) if op == "Gemm" else (
        len(shape) - 1 if op == "MatMul" else 1
    )  # fmt: skip
    return int(shape[axis])  # type: ignore[arg-type]


def build_table(
    model_path: str | os.PathLike[str],
    device: Device,
    *,
    batch: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    cache: LatencyCache | None = None,
    timing: Timing | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Cases 1-3: the table as a JSON-ready dict."""
    whole_number("--max-points", max_points, 2)
    whole_number("--batch", batch)
    timing = timing or Timing()
    cache = cache or LatencyCache(None)
    model = load_model(model_path)
    bound = bound_shapes(model, shapes, batch)
    print_ = fingerprint(model)
    analysis = analysed(model, bound)
    units = find_units(analysis)
    machine = device.machine(timing)
    plan = [(u, _points(u, max_points)) for u in units]
    total = sum(len(v) for _, pts in plan for v in pts.values()) + 1
    done = 0
    whole = _whole_model_ms(model_path, device, bound, timing)
    rows = []
    for unit, pts in plan:
        row = _unit_row(unit)
        measured = _unit_points(unit, pts, device, timing, cache, machine)
        done += sum(len(v) for v in pts.values())
        if progress is not None:
            progress("latency", done, total)
        for kind, points in pts.items():
            curve = [[k_in if kind == "in" else k_out, measured[k_in, k_out]] for k_in, k_out in points]
            if kind == "full":
                row["full_ms"] = curve[0][1]
            else:
                row[kind]["curve"] = curve
        rows.append(row)
        cache.save()
    if progress is not None:
        progress("latency", total, total)
    logger.info("latency: %d points, %d from the cache", cache.hits + cache.misses, cache.hits)
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": os.fspath(model_path),
        "model_fingerprint": print_,
        "input_shapes": {k: list(v) for k, v in bound.items()},
        "batch": batch,
        "machine": machine,
        "max_points": max_points,
        "model_ms": whole,
        "units_ms": sum(r["full_ms"] for r in rows),
        "cache": {"hits": cache.hits, "measured": cache.misses},
        "units": rows,
        "groups": _group_rows(analysis, units),
        "branches": _branch_rows(analysis, rows),
    }


def _unit_row(unit: Unit) -> dict[str, Any]:
    def axis(a: Any) -> dict[str, Any] | None:
        if a is None:
            return None
        return {"channels": a.size, "groups": {str(g): n for g, n in sorted(a.positions.items())}}

    return {
        "node": unit.name,
        "op": unit.node.op_type,
        "followers": [f.op_type for f in unit.followers],
        "depthwise": unit.depthwise,
        "full_ms": 0.0,
        "out": axis(unit.out),
        "in": axis(unit.inp),
    }


def _group_rows(analysis: Analysis, units: list[Unit]) -> list[dict[str, Any]]:
    rows = []
    for g in analysis.groups:
        if not g.prunable:
            continue
        rows.append({
            "id": g.id, "size": g.size, "producers": list(g.producers),
            "units": [u.name for u in units if g.id in u.groups],
        })  # fmt: skip
    return rows


def _branch_rows(analysis: Analysis, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Removable residual branches, their layers and the sum of those layers' latencies."""
    from onnxrecede.engine.branches import find_branches

    full = {r["node"]: r["full_ms"] for r in rows}
    out = []
    for branch in find_branches(analysis):
        names = [n.name for n in branch.nodes if n.name in full]
        out.append(branch.to_dict() | {"units": names, "ms": sum(full[n] for n in names)})
    return out


def _unit_points(
    unit: Unit, pts: Mapping[str, list[tuple[int, int]]], device: Device, timing: Timing,
    cache: LatencyCache, machine: dict[str, Any],
) -> dict[tuple[int, int], float]:  # fmt: skip
    """Every point of a unit: from the cache, the rest timed together, interleaved."""
    result: dict[tuple[int, int], float] = {}
    todo: dict[tuple[int, int], tuple[str, Any]] = {}
    for point in dict.fromkeys(p for points in pts.values() for p in points):
        extracted = unit_model(unit, *point)
        key = cache_key(extracted.signature, machine)
        ms = cache.get(key)
        if ms is None:
            todo[point] = (key, extracted)
        else:
            result[point] = ms
    if todo:
        times = interleaved_ms(device, [(e.model, e.feeds) for _, e in todo.values()], timing)
        for (point, (key, _)), ms in zip(todo.items(), times, strict=True):
            cache.put(key, ms)
            result[point] = ms
    return result


def _whole_model_ms(
    path: str | os.PathLike[str],
    device: Device,
    shapes: Mapping[str, Sequence[int]],
    timing: Timing,
) -> float:
    session = device.session(os.fspath(path))
    feeds = random_inputs(session, shapes)
    whole = Timing(timing.warmup, max(timing.seconds, WHOLE_MODEL_SECONDS))
    runner = device.runner(session, feeds)
    from onnxrecede.bench.timing import measure_interleaved

    samples = measure_interleaved([runner], warmup=whole.warmup, runs=None, seconds=whole.seconds)[
        0
    ]
    return 1e3 * sorted(samples)[len(samples) // 2]


# ----------------------------------------------------------------------------- reading


def load_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a table file (:class:`InputError` when it is not one)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"latency table not found: {os.fspath(path)}") from None
    except (OSError, ValueError) as e:
        raise InputError(f"latency table {os.fspath(path)} cannot be read: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(
            f"{os.fspath(path)} is not an onnxrecede latency table (make one with "
            "`onnxrecede latency MODEL -o TABLE.json`)"
        )
    if doc.get("version") != VERSION:
        raise InputError(
            f"latency table {os.fspath(path)} has version {doc.get('version')}, this onnxrecede "
            f"reads version {VERSION}; measure it again with `onnxrecede latency`"
        )
    return doc
