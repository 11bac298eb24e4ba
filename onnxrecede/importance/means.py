"""Mean |x| per channel of some tensors over calibration data (the ``activation`` criterion's
probe loop, shared by :mod:`onnxrecede.importance.activation` and
:mod:`onnxrecede.importance.head_shares`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.errors import InputError
from onnxrecede.progress import Progress


def _channel_means(array: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    a = np.abs(np.asarray(array, dtype=np.float64))
    moved = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    return moved.sum(axis=1), moved.shape[1]


def mean_abs(
    model: ir.Model,
    tensors: dict[str, tuple[str, int]],
    calibration: Any,
    batch_size: int,
    limit: int | None,
    image: Any,
    progress: Progress | None,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per key: the sum of |x| per channel of tensor ``name`` along ``axis``, and the count."""
    from onnxrecede.data.sources import input_specs, open_samples
    from onnxrecede.runtime.probe import Probe

    samples = (
        calibration
        if hasattr(calibration, "batches")
        else open_samples(calibration, input_specs(model), image=image, limit=limit)
    )
    if len(samples) == 0:
        raise InputError(f"calibration data {calibration} holds no samples")
    probe = Probe(model, sorted({name for name, _ in tensors.values()}), include_outputs=True)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for _, arrays in probe.over(samples, batch_size, progress, stage="calibration"):
        for key, (name, axis) in tensors.items():
            total, n = _channel_means(arrays[name], axis)
            sums[key] = sums[key] + total if key in sums else total
            counts[key] = counts.get(key, 0) + n
    return sums, counts
