"""Least-squares reconstruction: refit each consumer of removed channels on calibration data.

For every linear consumer (:mod:`onnxrecede.consumers`), in graph order:

1. inputs ``X``: the *pruned* model's input to the consumer (kept channels only), with every
   consumer before it already refitted, so each layer also absorbs the error of those before;
2. targets ``Y``: the *original* model's output of the consumer (its kept output channels;
   for a MatMul, plus the bias of the Add that follows it);
3. rows: a Conv gives one row per output position, its im2col patch over the kept input
   channels; Gemm/MatMul one row per sample (per position of the leading axes for MatMul).
   At most ``max_rows`` rows per layer (default 65,536) are used, drawn at random (seeded) and
   spread evenly over the batches; memory holds one batch plus the normal equations
   ``A^T A`` (``D^2`` float64 values, ``D = kept inputs * kernel taps + 1``);
4. the solve: ``(A^T A + lambda I) theta = A^T Y`` in float64, ``theta`` = weights and bias, with
   ``lambda = ridge * mean(diag(A^T A))`` (the bias is not penalised; default ridge 1e-3);
5. the report, per consumer: the relative output error ``||A theta - Y|| / ||Y||`` over the
   sampled rows before the refit (with the layers before it refitted) and after it. A refit
   that would not lower the error is not applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.checks import number_problem, whole_number
from onnxrecede.data.sources import Samples
from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.errors import InputError
from onnxrecede.progress import Progress
from onnxrecede.repair.consumers import (
    LinearConsumer,
    conv_geometry,
    read_bias,
    read_weight,
    weight_kernel,
    write_bias,
    write_weight,
)
from onnxrecede.runtime.probe import Probe, model_batches

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ReconstructOptions:
    ridge: float = 1e-3
    max_rows: int = 65536
    batch_size: int = 32
    seed: int = 0

    def validate(self) -> None:
        if number_problem(self.ridge, 0.0) is not None:
            raise InputError(f"the ridge term must be >= 0 (--ridge), got {self.ridge}")
        whole_number("the row cap (--max-rows)", self.max_rows)


@dataclass
class _Normal:
    """Accumulated normal equations of one layer."""

    gram: np.ndarray
    cross: np.ndarray
    yy: float = 0.0
    rows: int = 0

    def add(self, a: np.ndarray, y: np.ndarray) -> None:
        self.gram += a.T @ a
        self.cross += a.T @ y
        self.yy += float(np.sum(y * y))
        self.rows += len(a)

    def error(self, theta: np.ndarray) -> float:
        sq = np.sum(theta * (self.gram @ theta)) - 2 * np.sum(theta * self.cross) + self.yy
        return float(np.sqrt(max(sq, 0.0) / self.yy)) if self.yy > 0 else 0.0


def conv_patches(
    x: np.ndarray,
    positions: tuple[np.ndarray, np.ndarray, np.ndarray],
    kernel: tuple[int, int],
    strides: list[int],
    dilations: list[int],
    pads: list[int],
) -> np.ndarray:
    """im2col rows ``[rows, C * kh * kw]`` of a 2-D conv input at output positions (n, h, w)."""
    n, ho, wo = positions
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    channels = np.arange(x.shape[1])[None, :]
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            h = ho * strides[0] + i * dilations[0]
            w = wo * strides[1] + j * dilations[1]
            taps.append(xp[n[:, None], channels, h[:, None], w[:, None]])
    return np.stack(taps, axis=2).reshape(len(n), -1)


def _rows(
    consumer: LinearConsumer,
    kernel: tuple[int, ...],
    x: np.ndarray,
    y: np.ndarray,
    take: int,
    rng: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Design rows (with a trailing 1 for the bias) and targets for one batch."""
    out_keep = consumer.out_keep
    node = consumer.node
    if node.op_type == "Conv":
        nb, _, hout, wout = y.shape
        flat = rng.choice(nb * hout * wout, size=min(take, nb * hout * wout), replace=False)
        n_idx, h_idx, w_idx = np.unravel_index(np.sort(flat), (nb, hout, wout))
        pos = (n_idx, h_idx, w_idx)
        strides, dilations, pads = conv_geometry(node, kernel)
        a = conv_patches(x, pos, (kernel[0], kernel[1]), strides, dilations, pads)
        t = y[pos[0], :, pos[1], pos[2]]
    else:
        a = np.moveaxis(x, consumer.axis, -1).reshape(-1, x.shape[consumer.axis])
        t = y.reshape(-1, y.shape[-1])
        if len(a) > take:
            pick = np.sort(rng.choice(len(a), size=take, replace=False))
            a, t = a[pick], t[pick]
    if out_keep is not None:
        t = t[:, out_keep]
    ones = np.ones((len(a), 1))
    return np.hstack([a.astype(np.float64), ones]), t.astype(np.float64)


def _supported(node: ir.Node) -> str | None:
    if node.op_type == "Conv":
        w = node.inputs[1]
        if w is None or w.const_value is None or len(w.const_value.shape) != 4:
            return "only 2-D convolutions with an initializer weight are refitted"
    return None


def reconstruct(
    pruned: ir.Model,
    original: ir.Model,
    consumers: list[LinearConsumer],
    samples: Samples,
    options: ReconstructOptions | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Refit ``consumers`` of ``pruned`` in place, layer by layer; returns the error report."""
    options = options or ReconstructOptions()
    options.validate()
    if len(samples) == 0:
        raise InputError("the calibration data holds no samples")
    targets = {c.node.outputs[0].name: c for c in consumers}
    reference = Probe(original, [n for n in targets if n], include_outputs=False)
    original_nodes = {n.name: n for n in original.graph if n.name}
    rng = np.random.default_rng(options.seed)
    per_batch = -(-options.max_rows * (reference.fixed_batch or options.batch_size) // len(samples))
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    for i, c in enumerate(consumers):
        reason = _supported(c.node)
        source = original_nodes.get(c.node.name or "")
        if reason is not None or source is None:
            skipped.append(f"{c.node.op_type} '{c.name}': {reason or 'unnamed node'}")
            continue
        stage = f"reconstruct {i + 1}/{len(consumers)} {c.name}"  # one bar per layer
        entries.append(
            _refit(pruned, c, source, reference, samples, options, per_batch, rng, progress, stage)
        )
    return {
        "ridge": options.ridge,
        "max_rows": options.max_rows,
        "calibration_samples": len(samples),
        "consumers": entries,
        "skipped": skipped,
    }


def _refit(
    pruned: ir.Model,
    c: LinearConsumer,
    original_node: ir.Node,
    reference: Probe,
    samples: Samples,
    options: ReconstructOptions,
    per_batch: int,
    rng: Any,
    progress: Progress | None,
    stage: str,
) -> dict[str, Any]:
    node = c.node
    const = ConstantEvaluator()
    weight = read_weight(node, const)  # [Cout_kept, Cin_kept, K]
    cout, cin, taps = weight.shape
    dim = cin * taps
    bias = read_bias(node, cout, const)
    target_name = original_node.outputs[0].name
    extra = None
    if node.op_type == "MatMul":
        extra = read_bias(original_node, read_weight(original_node, const).shape[0], const)
    kernel = weight_kernel(node, const)
    probe = Probe(pruned, [c.data.name or ""], include_outputs=False)
    normal = _Normal(np.zeros((dim + 1, dim + 1)), np.zeros((dim + 1, cout)))
    size = probe.fixed_batch or options.batch_size
    total = samples.num_batches(size)
    for done, (batch, n) in enumerate(model_batches(samples, size, probe.fixed_batch), 1):
        x = probe.run(batch.feeds)[c.data.name or ""][:n]
        y = reference.run(batch.feeds, [target_name or ""])[target_name or ""][:n]
        if extra is not None:
            y = y + extra.astype(y.dtype)
        normal.add(*_rows(c, kernel, x, y, per_batch, rng))
        if progress is not None:
            progress(stage, done, total)
    theta0 = np.vstack([weight.reshape(cout, dim).T, bias[None, :]])
    reg = np.zeros(dim + 1)
    reg[:dim] = options.ridge * float(np.mean(np.diag(normal.gram)[:dim]))
    try:
        theta = np.linalg.solve(normal.gram + np.diag(reg), normal.cross)
    except np.linalg.LinAlgError:
        theta = np.linalg.lstsq(normal.gram + np.diag(reg), normal.cross, rcond=None)[0]
    before, after = normal.error(theta0), normal.error(theta)
    applied = bool(np.all(np.isfinite(theta))) and after < before
    if applied:
        write_weight(pruned.graph, node, theta[:dim].T.reshape(cout, cin, taps))
        w = node.inputs[1]
        dtype = np.dtype(w.dtype.numpy()) if w is not None and w.dtype else np.dtype("float32")
        write_bias(pruned.graph, node, theta[dim], dtype)
    logger.info(
        "reconstruct %s: relative error %.4f -> %.4f (%d rows)",
        c.name, before, after if applied else before, normal.rows,
    )  # fmt: skip
    return {
        "node": c.name,
        "op_type": node.op_type,
        "rows": normal.rows,
        "kept_inputs": int(cin),
        "relative_error_before": before,
        "relative_error_after": after if applied else before,
        "applied": applied,
    }
