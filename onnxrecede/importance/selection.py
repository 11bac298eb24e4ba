"""Channel importances from data: what removing a channel costs the next layers after a refit.

For every linear consumer of tracked channels (a Conv with ``group == 1``, a Gemm or MatMul with a
constant weight; :mod:`onnxrecede.repair.linear_layers`), over the calibration data run through the
original model:

1. the normal matrix ``G = [A, 1]^T [A, 1]`` of the consumer's input rows ``A`` (im2col patches of
   sampled output positions, all input channels and taps), accumulated per batch with matrix
   products; ``P = (G + lambda I)^-1`` (``lambda = ridge * mean(diag(G))``);
2. removing input channel ``c`` (its taps ``S``) and refitting the rest by least squares raises
   the consumer's squared output error by exactly ``tr(W_S^T (P_SS)^-1 W_S)`` (``W_S``: the weight
   rows of ``c``): the channel's contribution that the other channels cannot reproduce. A channel
   that copies others costs 0, however large its weights (where filter norms mislead). Channels
   are removed greedily, cheapest first, updating ``W`` and ``P`` after each removal (as Optimal
   Brain Surgeon does), so two copies of one channel do not both look free: a channel's score is
   the consumer's error once it and every channel before it in that order are gone, the
   layer's error curve as a function of its cut;
3. that error is divided by the consumer's output energy ``tr(theta^T G theta)``, so scores
   compare across layers: a global threshold (or a MAC / parameter budget) cuts each layer
   until its relative output error reaches the same level; a channel read by several
   consumers adds theirs;
4. a channel that reaches no such consumer (only non-linear or unknown ops) gets the highest
   score plus one, so it is removed last.

Keys are the producers' first output tensor names (exporters such as paddle2onnx leave nodes
unnamed). Pair with reconstruction (:mod:`onnxrecede.repair.refit`): the cost assumes the refit.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from onnxrecede.data.sources import Samples, input_specs, open_samples
from onnxrecede.engine.analysis import Analysis
from onnxrecede.engine.constants import ConstantEvaluator
from onnxrecede.errors import InputError
from onnxrecede.importance.file_format import Importances
from onnxrecede.progress import Progress
from onnxrecede.repair.linear_layers import LinearLayer, linear_layer
from onnxrecede.runtime.probe import Probe

logger = logging.getLogger(__name__)

Scores = dict[Any, tuple[str, np.ndarray]]  #: scored tensor -> (importances key, scores)

#: the smallest relative ridge term of case 1
RIDGE_FLOOR = 1e-6


def _sites(analysis: Analysis) -> list[tuple[LinearLayer, np.ndarray]]:
    """Consumers whose every input channel is tracked, with the channels' labels."""
    const = analysis.constants
    found: dict[Any, tuple[LinearLayer, np.ndarray]] = {}
    for site in analysis.consume_sites:
        node = site.node
        if node in found or site.input_index != 1 or node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        layer = linear_layer(node, const)
        if isinstance(layer, str) or layer.groups != 1 or layer.cin != len(site.labels):
            continue
        found[node] = (layer, np.asarray(site.labels))
    return list(found.values())


def _accumulate(
    analysis: Analysis,
    sites: list[tuple[LinearLayer, np.ndarray]],
    samples: Samples,
    batch_size: int,
    max_rows: int,
    progress: Progress | None,
) -> list[np.ndarray]:
    """Case 1: the normal matrix of each consumer's input rows."""
    names = [layer.node.inputs[0].name or "" for layer, _ in sites]  # type: ignore[union-attr]
    probe = Probe(analysis.model, sorted(set(names)), include_outputs=False)
    grams = [np.zeros((lay.unknowns, lay.unknowns)) for lay, _ in sites]
    total = samples.num_batches(probe.fixed_batch or batch_size)
    rng = np.random.default_rng(0)
    for done, (_, arrays) in enumerate(probe.over(samples, batch_size), 1):
        for i, ((layer, _), name) in enumerate(zip(sites, names)):
            x = arrays[name]
            shape = _output_shape(layer, x)
            positions = layer.output_positions(shape)
            take = min(positions, -(-max_rows // total))
            picks = np.sort(rng.choice(positions, size=take, replace=False))
            a = layer.rows(x, picks, shape).astype(np.float64)
            a = np.hstack([a, np.ones((len(a), 1))])
            grams[i] += a.T @ a
        if progress is not None:
            progress("importances from data", done, total)
    return grams


def _output_shape(layer: LinearLayer, x: np.ndarray) -> tuple[int, ...]:
    if not layer.kernel:
        return (
            (*x.shape[:-1], layer.cout)
            if layer.node.op_type == "MatMul"
            else (x.shape[0], layer.cout)
        )
    out = [x.shape[0], layer.cout]
    spatial = len(layer.kernel)
    for i, size in enumerate(x.shape[2:]):
        span = (layer.kernel[i] - 1) * layer.dilations[i] + 1
        out.append((size + layer.pads[i] + layer.pads[i + spatial] - span) // layer.strides[i] + 1)
    return tuple(out)


def channel_costs(layer: LinearLayer, gram: np.ndarray, ridge: float) -> np.ndarray:
    """Cases 2-3: per input channel, the relative output error of the consumer when that channel
    and every channel removed before it in the greedy order are gone (and the rest refitted)."""
    (theta,), bias = layer.read(ConstantEvaluator())
    weights = np.vstack([theta, bias[None, :]])
    energy = float(np.sum(weights * (gram @ weights)))
    # a floor on the ridge keeps G invertible when channels are exact copies of each other
    reg = max(ridge, RIDGE_FLOOR) * float(np.mean(np.diag(gram)[:-1])) if len(gram) > 1 else 0.0
    inverse = np.linalg.pinv(gram + reg * np.diag(np.r_[np.ones(len(gram) - 1), 0.0]))
    steps = greedy_removal(inverse, weights, layer.cin, layer.taps)
    return steps / energy if energy > 0 else steps


def greedy_removal(
    inverse: np.ndarray, weights: np.ndarray, channels: int, taps: int
) -> np.ndarray:
    """Case 2, repeated: remove the cheapest channel, refit the others (``W -= P_:S P_SS^-1 W_S``,
    ``P -= P_:S P_SS^-1 P_S:``), repeat. Returns, per channel, the summed cost of the removals up
    to and including its own: the consumer's error curve along the order, which is what a global
    threshold compares across layers."""
    p, w = inverse.copy(), weights.copy()
    left = list(range(channels))
    total, cumulative = 0.0, np.zeros(channels)
    for _ in range(channels):
        idx = np.array([[c * taps + t for t in range(taps)] for c in left])
        blocks = np.linalg.pinv(p[idx[:, :, None], idx[:, None, :]])  # [n, taps, taps]
        ws = w[idx]  # [n, taps, cout]
        costs = np.einsum("nko,nkl,nlo->n", ws, blocks, ws)
        best = int(np.argmin(costs))
        s = idx[best]
        step = p[:, s] @ blocks[best]
        w -= step @ w[s]
        p -= step @ p[s, :]
        total += max(float(costs[best]), 0.0)
        cumulative[left[best]] = total
        left.pop(best)
    return cumulative


def data_importances(
    analysis: Analysis,
    samples: Samples,
    batch_size: int = 32,
    max_rows: int = 16384,
    ridge: float = 1e-3,
    progress: Progress | None = None,
) -> Importances:
    """Importances of every producer's output channels from ``samples`` (the module doc)."""
    sites = _sites(analysis)
    grams = _accumulate(analysis, sites, samples, batch_size, max_rows, progress) if sites else []
    per_label: dict[int, float] = {}
    for (layer, labels), gram in zip(sites, grams):
        for label, cost in zip(labels.tolist(), channel_costs(layer, gram, ridge)):
            per_label[int(label)] = per_label.get(int(label), 0.0) + float(cost)
    top = max(per_label.values(), default=0.0) + 1.0
    scores: dict[str, np.ndarray] = {}
    for node, view in analysis.channel_outputs.items():
        key = node.outputs[0].name
        if key and view.labels is not None:
            scores[key] = np.array([per_label.get(int(lab), top) for lab in view.labels])
    logger.info("importances from data: %d consumer(s), %d producer(s)", len(sites), len(scores))
    return Importances(scores, {"criterion": "data", "consumers": len(sites)}, "calibration data")


def from_calibration(
    analysis: Analysis, repair: Any, progress: Progress | None = None
) -> tuple[Importances, Any]:
    """``prune`` without importances: score channels on ``repair.calibration`` and return the
    importances with repair options that reconstruct on the same samples."""
    if repair is None or repair.calibration is None:
        raise InputError(
            "choosing channels from data needs calibration samples: give --calibration DATA "
            "(or -i IMPORTANCES)"
        )
    samples = repair.calibration
    if not isinstance(samples, Samples):
        specs = input_specs(analysis.model)
        samples = open_samples(samples, specs, image=repair.image, limit=repair.limit)
    imp = data_importances(
        analysis, samples, repair.batch_size, ridge=repair.ridge, progress=progress
    )
    return imp, dataclasses.replace(repair, reconstruct=True, calibration=samples)


def allocate_by_sensitivity(ranking: Scores, costs: Scores) -> Scores:
    """``--allocate sensitivity``: ``ranking`` orders the channels inside each producer, the data
    ``costs`` say how many go: each producer's ``k``-th least important channel (by ``ranking``)
    gets the producer's ``k``-th smallest cost, so a global cut removes channels where the
    summed cost (the layer's estimated output error as a function of its cut) is lowest, but
    always the ones ``ranking`` likes least. Tensors without costs keep their scores. Both maps
    are keyed by the scored tensor (``api._scores``)."""
    out: Scores = {}
    for value, (key, rank) in ranking.items():
        cost = costs.get(value)
        if cost is None or len(cost[1]) != len(rank):
            out[value] = (key, rank)
            continue
        moved = np.empty(len(rank))
        moved[np.argsort(rank, kind="stable")] = np.sort(cost[1])
        out[value] = (key, moved)
    return out
