"""The ``activation`` criterion for attention heads: each head's share of the attention output.

Cases:
1. The attention blocks are found by the engine's analysis (whole heads, ``rules.heads``).
2. For each block, the input of its output projection (a Gemm/MatMul with a constant weight
   that consumes the heads' channels) is measured over the calibration data: mean |x| per
   channel, summed over each head's channels; a head's share is that sum over the block's.
3. Every channel of the block's q/k/v projections scores its head's share; other channels of
   those projections keep their mean |activation| (:mod:`onnxrecede.importance.activation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxrecede.engine.analysis import Analysis, analyze
from onnxrecede.importance.means import mean_abs

if TYPE_CHECKING:
    from onnxrecede.importance.criteria import ChannelProducer

from onnxrecede.progress import Progress

_PROJECTIONS = frozenset({"Gemm", "MatMul"})


def _head_roots(analysis: Analysis) -> np.ndarray:
    units = [v.labels for v in analysis.head_views if v.units == "heads"]
    if not units:
        return np.empty(0, np.int64)
    return np.unique(analysis.roots[np.concatenate(units)])


def _projection_inputs(analysis: Analysis, heads: np.ndarray) -> dict[str, tuple[str, int]]:
    """Case 2: tensor name and channel axis of each output projection's head input."""
    found: dict[str, tuple[str, int]] = {}
    for site in analysis.consume_sites:
        x = site.node.inputs[0]
        view = analysis.view(x)
        if site.node.op_type not in _PROJECTIONS or x is None or not x.name or view is None:
            continue
        if np.isin(analysis.roots[view.labels], heads).all():
            found[x.name] = (x.name, view.axis)
    return found


def head_shares(
    model: ir.Model,
    producers: Sequence[ChannelProducer],
    calibration: Any,
    batch_size: int,
    limit: int | None,
    image: Any,
    progress: Progress | None,
    base: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Case 3: importances of the q/k/v projections, by key (empty without attention);
    ``base``: the mean |activation| scores, kept for channels outside the heads."""
    analysis = analyze(model)
    heads = _head_roots(analysis)
    tensors = _projection_inputs(analysis, heads)
    if not tensors:
        return {}
    sums, _ = mean_abs(model, tensors, calibration, batch_size, limit, image, progress)
    share: dict[int, float] = {}
    values = {x.name: x for s in analysis.consume_sites if (x := s.node.inputs[0]) is not None}
    for name, total in sums.items():
        view = analysis.view(values[name])
        assert view is not None
        roots = analysis.roots[view.labels]
        per_head = {int(r): float(total[roots == r].sum()) for r in np.unique(roots)}
        whole = sum(per_head.values()) or 1.0
        share.update({r: s / whole for r, s in per_head.items()})
    return _producer_scores(analysis, producers, share, base)


def _producer_scores(
    analysis: Analysis,
    producers: Sequence[ChannelProducer],
    share: dict[int, float],
    base: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    by_name = {n.name: view for n, view in analysis.channel_outputs.items()}
    for p in producers:
        view = by_name.get(p.node.name)
        if view is None or len(view) != p.channels:
            continue
        roots = analysis.roots[view.labels]
        if p.key in base and any(int(r) in share for r in roots):
            old = base[p.key]
            out[p.key] = np.asarray([share.get(int(r), old[i]) for i, r in enumerate(roots)])
    return out
