"""Attention blocks in reports: the heads (or head dims) each block loses, and their status.

A block is the channel group of a Reshape that split a projection into (heads, head_dim)
(``rules.heads``), named by the group's producers (its q/k/v projections). Units are counted
along the split axis once (MultiheadAttention's layout repeats the heads over the batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.rules.heads import period


def _blocks(analysis: Analysis) -> dict[str, tuple[int, str, np.ndarray]]:
    """Block name -> (group id, unit kind, one label per unit)."""
    found: dict[str, tuple[int, str, np.ndarray]] = {}
    for view in analysis.head_views:
        if view.units is None:
            continue
        units = view.labels[: period(view.labels)]
        for gid in analysis.group_of_labels(units):
            name = ", ".join(analysis.groups[gid].producers) or f"group {gid}"
            found.setdefault(name, (gid, view.units, units))
    return found


def removed_units(analysis: Analysis, keep_element: np.ndarray) -> dict[str, dict[str, list[int]]]:
    """Per unit kind (``heads`` / ``dims``), per block: the indices of the removed units."""
    out: dict[str, dict[str, list[int]]] = {}
    for name, (_, kind, units) in _blocks(analysis).items():
        gone = np.flatnonzero(~keep_element[units])
        if len(gone):
            out.setdefault(kind, {})[name] = [int(i) for i in gone]
    return out


def attention_blocks(analysis: Analysis) -> list[dict[str, Any]]:
    """Every recognised attention block: its units, and why it is blocked if it is."""
    rows = []
    for name, (gid, kind, units) in _blocks(analysis).items():
        group = analysis.groups[gid]
        rows.append(
            {
                "block": name,
                "group": gid,
                "units": kind,
                "count": int(len(units)),
                "status": "prunable" if group.prunable else "blocked",
                "barriers": [b.to_dict() for b in group.barriers],
            }
        )
    return rows
