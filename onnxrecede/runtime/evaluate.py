"""Classification accuracy of a model in ONNX Runtime (CPU): top-1 and top-5.

1. The scores are the model's first output (or the one named), shaped ``[N, classes]``
   (trailing axes of size 1 are dropped: ``[N, classes, 1, 1]`` works too).
2. Top-1: the label is the arg max (ties: the first, as ``numpy.argmax``). Top-5: fewer than 5
   classes score strictly higher than the label. Top-5 is reported for 5 classes or more.
3. A model with a fixed batch size is fed that many samples per run (see :mod:`onnxrecede.probe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxrecede.checks import whole_number
from onnxrecede.data.sources import ImageOptions, Samples, input_specs, open_samples
from onnxrecede.errors import InputError
from onnxrecede.io.model_files import ModelSource, load_model
from onnxrecede.progress import Progress
from onnxrecede.runtime.probe import Probe


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float | None
    correct1: int
    correct5: int | None
    samples: int
    classes: int
    output: str
    data: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "correct_top1": self.correct1,
            "correct_top5": self.correct5,
            "samples": self.samples,
            "classes": self.classes,
            "output": self.output,
            "data": self.data,
        }

    def line(self) -> str:
        top5 = (
            f"  top-5 {100 * self.top5:.2f}% ({self.correct5}/{self.samples})"
            if self.top5 is not None
            else ""
        )
        return f"top-1 {100 * self.top1:.2f}% ({self.correct1}/{self.samples}){top5}"


def scores_matrix(scores: np.ndarray, output: str) -> np.ndarray:
    """``[N, classes]`` scores from an output (trailing size-1 axes dropped)."""
    s = np.asarray(scores)
    while s.ndim > 2 and s.shape[-1] == 1:
        s = s[..., 0]
    if s.ndim != 2:
        raise InputError(
            f"output '{output}' has shape {tuple(scores.shape)}; accuracy needs class scores "
            "[N, classes] (choose another output)"
        )
    return s


def rank_of_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many classes score strictly higher than the label (0: top-1, < 5: top-5)."""
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= scores.shape[1]:
        raise InputError(
            f"labels range over {labels.min()}..{labels.max()} but the model scores "
            f"{scores.shape[1]} classes"
        )
    own = scores[np.arange(len(labels)), labels]
    return np.sum(scores > own[:, None], axis=1)


def evaluate(
    model: ModelSource,
    data: Any,
    *,
    image: ImageOptions | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    output: str | None = None,
    progress: Progress | None = None,
) -> Accuracy:
    """Top-1/top-5 accuracy of ``model`` on ``data`` (a source for :func:`open_samples`)."""
    whole_number("batch_size", batch_size)
    m = load_model(model)
    samples = (
        data
        if isinstance(data, Samples)
        else open_samples(data, input_specs(m), image=image, limit=limit)
    )
    if not samples.has_labels:
        raise InputError(
            f"{samples.description} has no labels; accuracy needs them ('y' in a .npz, "
            "class folders, CIFAR, digits)"
        )
    outputs = [v.name for v in m.graph.outputs if v.name]
    name = output or outputs[0]
    if name not in outputs:
        raise InputError(f"the model has no output '{name}'; its outputs: {', '.join(outputs)}")
    probe = Probe(m, [], include_outputs=True)
    ranks: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    classes = 0
    for batch, arrays in probe.over(samples, batch_size, progress, stage="evaluate"):
        labels = batch.labels
        assert labels is not None
        scores = scores_matrix(arrays[name], name)
        classes = scores.shape[1]
        ranks.append(rank_of_labels(scores, labels))
        hits.append(np.argmax(scores, axis=1) == labels)
    rank = np.concatenate(ranks)
    c1 = int(np.sum(np.concatenate(hits)))
    c5 = int(np.sum(rank < 5)) if classes >= 5 else None
    return Accuracy(
        top1=c1 / len(rank),
        top5=None if c5 is None else c5 / len(rank),
        correct1=c1,
        correct5=c5,
        samples=len(rank),
        classes=classes,
        output=name,
        data=samples.description,
    )
