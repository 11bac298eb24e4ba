"""Histograms of importances (``inspect --plot``): a PNG with matplotlib, else text.

The values are what the plan ranks: each prunable channel's importance after its coupled group
is aggregated (``aggregate``). The threshold drawn is the one a policy would use: ``threshold``
as given, the value under which ``ratio`` of the channels lie (global scope), or ``auto``'s
valley (:mod:`onnxrecede.engine.targets`). With no policy the valley is drawn when the set is
bimodal, nothing otherwise.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxrecede.errors import InputError

PLOT_HINT = "install matplotlib (pip install 'onnxrecede[plot]') to get the PNG"


class PlotUnavailableError(InputError):
    """matplotlib is not installed."""


@dataclass
class ImportanceHistogram:
    values: np.ndarray  # every scored prunable channel
    groups: list[tuple[str, np.ndarray]] = field(default_factory=list)  # label, values
    threshold: float | None = None
    how: str = ""

    def sides(self) -> tuple[int, int]:
        """Channels below the threshold (removed) and at or above it (kept)."""
        if self.threshold is None:
            return 0, len(self.values)
        below = int((self.values < self.threshold).sum())
        return below, len(self.values) - below

    def to_dict(self) -> dict[str, Any]:
        below, above = self.sides()
        return {"threshold": self.threshold, "how": self.how, "below": below, "above": above,
                "channels": len(self.values), "groups": len(self.groups)}  # fmt: skip


def histogram_data(
    model: Any,
    importances: Any,
    *,
    ratio: float | str | None = None,
    threshold: float | None = None,
    aggregate: str = "max",
) -> ImportanceHistogram:
    """The values, per-group values and threshold to draw for ``model`` and ``importances``."""
    from onnxrecede.engine.analysis import analyze
    from onnxrecede.engine.plan import class_scores
    from onnxrecede.importance.file_format import load_importances, scores_by_value
    from onnxrecede.io.model_files import load_model
    from onnxrecede.policy.targets import auto_threshold

    m = load_model(model)
    analysis = analyze(m)
    scores = scores_by_value(m, load_importances(importances))
    importance = class_scores(analysis, scores, aggregate)
    groups = []
    for g in analysis.groups:
        vals = [importance[int(r)] for r in g.classes if int(r) in importance]
        if g.prunable and vals:
            label = g.producers[0] + (f" +{len(g.producers) - 1}" if len(g.producers) > 1 else "")
            groups.append((f"group {g.id}: {label}", np.asarray(vals)))
    if not groups:
        raise InputError("no prunable group is scored by these importances: nothing to plot")
    values = np.concatenate([v for _, v in groups])
    hist = ImportanceHistogram(values, groups)
    if threshold is not None:
        hist.threshold, hist.how = threshold, f"--threshold {threshold:g}"
    elif isinstance(ratio, float):
        s = np.sort(values)
        k = min(int(math.floor(ratio * len(s) + 1e-9)), len(s) - 1)
        hist.threshold = float(s[k]) if k > 0 else float(s[0])
        hist.how = f"--ratio {ratio:g} (global)"
    else:
        try:
            cut = auto_threshold(values)
        except InputError as e:
            if ratio == "auto":
                raise
            hist.how = f"no threshold drawn: {str(e).split(' (')[0].removeprefix('--ratio auto: ')}"
        else:
            hist.threshold = cut.threshold
            hist.how = f"--ratio auto (valley, Ashman's D {cut.separation:.2f})"
    return hist


def _edges(values: np.ndarray, bins: int, log: bool) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if log:
        if lo <= 0:
            raise InputError("--log needs positive importances; drop --log")
        return np.geomspace(lo, hi if hi > lo else lo * 1.01, bins + 1)
    return np.linspace(lo, hi if hi > lo else lo + 1e-12, bins + 1)


def text_histogram(hist: ImportanceHistogram, *, bins: int = 20, log: bool = False) -> str:
    """The global histogram as text: one row per bin, a bar, the count, the threshold marked."""
    edges = _edges(hist.values, bins, log)
    counts, _ = np.histogram(hist.values, edges)
    width = 50
    peak = max(int(counts.max()), 1)
    lines = [
        f"importances of {len(hist.values)} prunable channels ({'log' if log else 'linear'} bins)"
    ]
    for i, c in enumerate(counts):
        mark = ""
        if hist.threshold is not None and edges[i] <= hist.threshold < edges[i + 1]:
            mark = "  <- threshold"
        bar = "#" * int(round(width * c / peak))
        lines.append(f"{edges[i]:>11.4g} .. {edges[i + 1]:<11.4g} {bar:<{width}} {c:>6}{mark}")
    below, above = hist.sides()
    if hist.threshold is not None:
        lines.append(
            f"threshold {hist.threshold:.4g} ({hist.how}): {below} below, {above} at or above"
        )
    else:
        lines.append(hist.how)
    return "\n".join(lines)


def save_plot(
    hist: ImportanceHistogram,
    path: str | os.PathLike[str],
    *,
    log: bool = False,
    max_groups: int = 24,
) -> None:
    """Global histogram on top, then one small histogram per group; written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(f"--plot needs matplotlib: {PLOT_HINT}") from None
    from onnxrecede.io.outputs import atomic_write_bytes

    groups = hist.groups[:max_groups]
    cols = 4
    rows = 1 + math.ceil(len(groups) / cols)
    fig = plt.figure(figsize=(3.2 * cols, 2.4 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols)
    ax = fig.add_subplot(grid[0, :])
    _draw(ax, hist.values, hist, log, bins=60)
    below, above = hist.sides()
    title = f"{len(hist.values)} prunable channels"
    if hist.threshold is not None:
        title += f"; threshold {hist.threshold:.3g} ({hist.how}): {below} removed, {above} kept"
    ax.set_title(title, fontsize=10)
    for i, (label, vals) in enumerate(groups):
        sub = fig.add_subplot(grid[1 + i // cols, i % cols])
        _draw(sub, vals, hist, log, bins=20)
        n_below = int((vals < hist.threshold).sum()) if hist.threshold is not None else 0
        sub.set_title(f"{label[:34]}\n{n_below} | {len(vals) - n_below}", fontsize=7)
        sub.tick_params(labelsize=6)
    if len(hist.groups) > max_groups:
        fig.text(0.01, 0.01, f"{len(hist.groups) - max_groups} more groups not shown", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _draw(ax: Any, vals: np.ndarray, hist: ImportanceHistogram, log: bool, bins: int) -> None:
    edges = _edges(hist.values, bins, log)
    ax.hist(vals, bins=edges, color="#4c72b0")
    if log:
        ax.set_xscale("log")
    if hist.threshold is not None:
        ax.axvline(hist.threshold, color="#c44e52", linestyle="--", linewidth=1.2)
