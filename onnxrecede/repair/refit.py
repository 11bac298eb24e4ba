"""Layer-by-layer least-squares refit of the linear layers that lost input channels.

For every layer (:mod:`onnxrecede.repair.linear_layers`), in graph order:

1. targets ``Y``: the *original* model's output of the layer at sampled output positions (its
   kept output channels). All targets come from one run of the original model over the
   calibration data, cached as the sampled rows only;
2. inputs ``X``: the *pruned* model's input to the layer at the same positions, with every layer
   before it already refitted (so each layer also absorbs the error of those before). Only the
   nodes that input needs are run (one ONNX Runtime session per layer);
3. a layer fed by a global average pool (through ``Flatten``/``Reshape``/``Squeeze``; a Gemm,
   MatMul or 1x1 Conv) is fitted on the pool's *input* positions: ``W mean(x) + b`` equals
   ``mean(W x + b)``, so every spatial position is a row (the target is the original layer
   applied to the original pool input), instead of one row per sample;
4. rows per layer: ``max(8192, 16 * unknowns)``, at most ``max_rows``, drawn at random (seeded)
   and evenly from the first calibration batches that hold 4 times as many positions (at least
   2 batches; every batch for a Gemm or MatMul with one row per sample), so a conv layer's
   refit runs the pruned model on part of the data only. Per batch the normal equations
   ``A^T A`` and ``A^T Y`` are accumulated with matrix products (per group for grouped convs),
   in float64;
5. the solve per group: ``(A^T A + lambda I) theta = A^T Y`` with ``lambda = ridge *
   mean(diag(A^T A))`` (the bias is not penalised). A layer with fewer rows than unknowns per
   group is named in ``underdetermined`` (the ridge term then picks the solution);
6. the refit is applied only when it lowers the relative error ``||A theta - Y|| / ||Y||``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.data.sources import Samples
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.errors import InputError
from onnxrecede.progress import Progress
from onnxrecede.repair.consumers import LinearConsumer, linear_consumers
from onnxrecede.repair.linear_layers import LinearLayer, linear_layer
from onnxrecede.runtime.probe import Probe, model_batches

logger = logging.getLogger(__name__)


#: the fewest rows a layer is given (when the data has them), and rows per unknown
MIN_ROWS = 8192
ROWS_PER_UNKNOWN = 16
#: a layer's rows are drawn from the first batches that hold this many times as many positions
#: (at least MIN_BATCHES): the pruned model then runs on those batches only
SPREAD = 4
MIN_BATCHES = 2
_RESHAPES = ("Flatten", "Reshape", "Squeeze")


@dataclass
class Task:
    """One layer to refit and where its rows come from (cases 1-3 of the module doc)."""

    consumer: LinearConsumer
    layer: LinearLayer  #: the pruned node
    source: str  #: tensor of the pruned model whose rows are the design
    target: str  #: tensor of the original model the targets are read from
    original: LinearLayer  #: the original node
    pooled: bool = False
    batches: int = 0  #: how many of the calibration batches its rows come from (case 4)
    picks: list[np.ndarray] | None = None  #: per batch, the sampled flat positions
    shapes: list[tuple[int, ...]] | None = None  #: per batch, the output shape they index
    ys: list[np.ndarray] | None = None  #: per batch, the targets at those positions


@dataclass
class Normal:
    """Accumulated normal equations of the groups of one layer."""

    gram: np.ndarray  #: [groups, d + 1, d + 1]
    cross: np.ndarray  #: [groups, d + 1, cout_g]
    yy: float = 0.0
    rows: int = 0

    @classmethod
    def empty(cls, groups: int, dim: int, cout_g: int) -> Normal:
        return cls(np.zeros((groups, dim + 1, dim + 1)), np.zeros((groups, dim + 1, cout_g)))

    def add(self, a: np.ndarray, y: np.ndarray) -> None:
        """``a`` ``[rows, groups * d]``, ``y`` ``[rows, groups * cout_g]``."""
        g = self.gram.shape[0]
        rows = len(a)
        ag = np.concatenate([a.reshape(rows, g, -1), np.ones((rows, g, 1))], axis=2).transpose(
            1, 0, 2
        )  # [g, rows, d + 1]
        yg = y.reshape(rows, g, -1).transpose(1, 0, 2)
        self.gram += np.matmul(ag.transpose(0, 2, 1), ag)
        self.cross += np.matmul(ag.transpose(0, 2, 1), yg)
        self.yy += float(np.sum(y * y))
        self.rows += rows

    def error(self, theta: np.ndarray) -> float:
        sq = float(np.sum(theta * np.matmul(self.gram, theta)) - 2 * np.sum(theta * self.cross))
        sq += self.yy
        return float(np.sqrt(max(sq, 0.0) / self.yy)) if self.yy > 0 else 0.0

    def solve(self, ridge: float) -> np.ndarray:
        dim = self.gram.shape[1] - 1
        thetas = []
        for gram, cross in zip(self.gram, self.cross):
            reg = np.zeros(dim + 1)
            reg[:dim] = ridge * float(np.mean(np.diag(gram)[:dim])) if dim else 0.0
            try:
                thetas.append(np.linalg.solve(gram + np.diag(reg), cross))
            except np.linalg.LinAlgError:
                thetas.append(np.linalg.lstsq(gram + np.diag(reg), cross, rcond=None)[0])
        return np.stack(thetas)


def refit_consumers(
    analysis: Analysis, keep_element: np.ndarray
) -> tuple[list[LinearConsumer], list[str]]:
    """Every layer a refit can reach that loses input channels (and grouped convs that lose
    channels), in graph order; and the consumers it cannot, with why."""
    return linear_consumers(analysis, keep_element, _refittable, grouped=True)


def _refittable(node: ir.Node, input_index: int, const: ConstantEvaluator) -> str | None:
    if input_index != 1:
        return "the channels are not read by the weight"
    layer = linear_layer(node, const)
    return layer if isinstance(layer, str) else None


def plan_tasks(
    pruned: ir.Model, original: ir.Model, consumers: list[LinearConsumer]
) -> tuple[list[Task], list[str]]:
    """The layers to refit and the consumers that cannot be, with why."""
    const = ConstantEvaluator()
    by_output = {n.outputs[0].name: n for n in original.graph if n.outputs and n.outputs[0].name}
    tasks, skipped = [], []
    for c in consumers:
        layer = linear_layer(c.node, const)
        source_node = by_output.get(c.node.outputs[0].name or "")
        orig = (
            linear_layer(source_node, const) if source_node is not None else "not in the original"
        )
        if isinstance(layer, str) or isinstance(orig, str):
            skipped.append(
                f"{c.node.op_type} '{c.name}': {layer if isinstance(layer, str) else orig}"
            )
            continue
        pool_input = _pooled_source(layer, c.data)
        if pool_input is not None:
            tasks.append(Task(c, layer, pool_input, pool_input, orig, pooled=True))
        else:
            tasks.append(Task(c, layer, c.data.name or "", c.node.outputs[0].name or "", orig))
    return tasks, skipped


def _pooled_source(layer: LinearLayer, data: ir.Value) -> str | None:
    """The input of a global average pool feeding ``layer`` (case 3), or None."""
    if layer.groups != 1 or layer.taps != 1 or any(s != 1 for s in layer.strides):
        return None
    if any(p != 0 for p in layer.pads):
        return None
    value: ir.Value | None = data
    while value is not None and value.producer() is not None:
        node = value.producer()
        assert node is not None
        if node.op_type == "GlobalAveragePool":
            src = node.inputs[0]
            ok = src is not None and src.shape is not None and len(src.shape) >= 3
            return src.name if ok and src is not None else None
        if node.op_type not in _RESHAPES or len(value.uses()) != 1:
            return None
        value = node.inputs[0]
    return None


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _budget(task: Task, max_rows: int) -> int:
    return min(max_rows, max(MIN_ROWS, ROWS_PER_UNKNOWN * task.layer.unknowns))


def collect_targets(
    original: ir.Model,
    tasks: list[Task],
    samples: Samples,
    options: Any,
    progress: Progress | None,
) -> None:
    """Case 1: one run of the original; each task keeps its sampled positions and targets."""
    const = ConstantEvaluator()
    probe = Probe(original, sorted({t.target for t in tasks}), include_outputs=False)
    size = probe.fixed_batch or options.batch_size
    total = samples.num_batches(size)
    thetas = {id(t): t.original.read(const) for t in tasks if t.pooled}
    matmul_bias = {
        id(t): t.original.read(const)[1]
        for t in tasks
        if not t.pooled and t.layer.node.op_type == "MatMul"
    }
    for t in tasks:
        t.picks, t.ys, t.shapes = [], [], []
    for done, (batch, n) in enumerate(model_batches(samples, size, probe.fixed_batch), 1):
        arrays = probe.run(batch.feeds)
        for i, t in enumerate(tasks):
            assert t.picks is not None and t.ys is not None and t.shapes is not None
            y = arrays[t.target][:n]
            positions = len(_channels_last(y)) if t.pooled else t.original.output_positions(y.shape)
            if done == 1:  # case 4: the batches this layer's rows come from
                want = SPREAD * _budget(t, options.max_rows)
                t.batches = min(total, max(MIN_BATCHES, -(-want // max(positions, 1))))
            if done > t.batches:
                continue
            take = min(positions, -(-_budget(t, options.max_rows) // t.batches))
            rng = np.random.default_rng([options.seed, i, done])
            picks = np.sort(rng.choice(positions, size=take, replace=False))
            if t.pooled:
                (theta,), bias = thetas[id(t)]
                rows = _channels_last(y)[picks].astype(np.float64)
                target = rows @ theta + bias
            else:
                target = t.original.targets(y, picks).astype(np.float64)
                if id(t) in matmul_bias:
                    target = target + matmul_bias[id(t)]
            keep = t.consumer.out_keep
            t.picks.append(picks)
            t.shapes.append(tuple(y.shape))
            t.ys.append((target if keep is None else target[:, keep]).astype(np.float32))
        if progress is not None:
            progress("reconstruct: original outputs", done, total)


def refit_layer(
    pruned: ir.Model,
    task: Task,
    samples: Samples,
    options: Any,
    progress: Progress | None,
    stage: str,
) -> dict[str, Any]:
    """Cases 2, 4-6 for one layer, in place; returns its report entry."""
    layer = task.layer
    assert task.picks is not None and task.ys is not None and task.shapes is not None
    probe = Probe(pruned, [task.source], include_outputs=False, needed_only=True)
    size = probe.fixed_batch or options.batch_size
    g = layer.groups
    normal = Normal.empty(g, layer.unknowns - 1, layer.cout // g)
    for done, (batch, n) in enumerate(model_batches(samples, size, probe.fixed_batch), 1):
        if done > task.batches:
            break
        x = probe.run(batch.feeds)[task.source][:n]
        picks = task.picks[done - 1]
        a = _channels_last(x)[picks] if task.pooled else layer.rows(x, picks, task.shapes[done - 1])
        normal.add(a.astype(np.float64), task.ys[done - 1].astype(np.float64))
        if progress is not None:
            progress(stage, done, task.batches)
    task.picks = task.ys = task.shapes = None  # free the cached rows
    return _solve_and_write(pruned, task, normal, options)


def _solve_and_write(pruned: ir.Model, task: Task, normal: Normal, options: Any) -> dict[str, Any]:
    layer = task.layer
    const = ConstantEvaluator()
    thetas, bias = layer.read(const)
    cout_g = layer.cout // layer.groups
    theta0 = np.stack(
        [np.vstack([t, bias[i * cout_g : (i + 1) * cout_g][None, :]]) for i, t in enumerate(thetas)]
    )
    theta = normal.solve(options.ridge)
    before, after = normal.error(theta0), normal.error(theta)
    applied = bool(np.all(np.isfinite(theta))) and after < before
    if applied:
        layer.write(pruned.graph, [t[:-1] for t in theta], theta[:, -1, :].reshape(-1))
    name = task.consumer.name
    logger.info(
        "reconstruct %s: relative error %.4f -> %.4f (%d rows, %d unknowns per output)",
        name, before, after if applied else before, normal.rows, layer.unknowns,
    )  # fmt: skip
    return {
        "node": name,
        "op_type": layer.node.op_type,
        "rows": normal.rows,
        "kept_inputs": int(layer.cin),
        "unknowns": int(layer.unknowns),
        "rows_from": "pool input positions" if task.pooled else "output positions",
        "relative_error_before": before,
        "relative_error_after": after if applied else before,
        "applied": applied,
    }


def check_samples(samples: Samples) -> None:
    if len(samples) == 0:
        raise InputError("the calibration data holds no samples")
