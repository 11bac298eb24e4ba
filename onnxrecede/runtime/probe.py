"""Run a model in ONNX Runtime (CPU) over samples and read intermediate tensors.

Cases:
1. A requested intermediate tensor becomes an extra graph output of a private copy of the
   model (the caller's model is never modified); its type comes from shape inference where the
   graph does not say it.
2. A requested graph input is answered with the batch's own feed, an initializer or Constant
   with its value (ONNX Runtime cannot output either of them).
3. Samples are fed batch by batch: memory holds one batch and its requested tensors.
4. A model whose inputs fix the batch size is fed batches of that size; the last one is padded
   by repeating its last sample, and the padding is cut from every result whose first axis has
   the batch size.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxrecede.data.sources import Batch, Samples
from onnxrecede.errors import InputError, RuntimeUnavailableError
from onnxrecede.io.model_files import (
    EXTERNAL_DATA_THRESHOLD,
    ModelSource,
    initializer_bytes,
    load_model,
)
from onnxrecede.progress import Progress
from onnxrecede.runtime import session as runtime

logger = logging.getLogger(__name__)



def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    values: dict[str, ir.Value] = {v.name: v for v in graph.inputs if v.name}
    values.update({name: v for name, v in graph.initializers.items()})
    for node in graph:
        values.update({o.name: o for o in node.outputs if o.name})
    return values


def _constant_of(value: ir.Value) -> np.ndarray | None:
    if value.const_value is not None:
        return np.asarray(value.const_value.numpy())
    node = value.producer()
    if node is not None and node.op_type == "Constant" and "value" in node.attributes:
        return np.asarray(node.attributes["value"].as_tensor().numpy())
    return None


class Probe:
    """An ONNX Runtime CPU session of a copy of ``model`` that also outputs ``names``.

    ``run(feeds)`` returns name -> array for every requested tensor, plus the model's own
    outputs when ``include_outputs`` is set.
    """

    def __init__(
        self,
        model: ModelSource,
        names: Sequence[str] = (),
        *,
        include_outputs: bool = True,
        threads: int | None = None,
    ) -> None:
        m = load_model(model)  # a private copy
        graph = m.graph
        values = _values_by_name(graph)
        missing = [n for n in names if n not in values]
        if missing:
            raise InputError(
                f"cannot probe tensor(s) {', '.join(repr(n) for n in missing[:5])}: "
                "no value of the model has that name"
            )
        self.input_names = [v.name for v in graph.inputs if v.name and not v.is_initializer()]
        self.fixed_batch = fixed_batch(graph)
        self.model_outputs = [v.name for v in graph.outputs if v.name] if include_outputs else []
        self._constants: dict[str, np.ndarray] = {}
        self._fed: list[str] = []
        exposed: list[ir.Value] = []
        for name in dict.fromkeys(names):
            value = values[name]
            const = _constant_of(value)
            if const is not None:
                self._constants[name] = const
            elif value.is_graph_input():
                self._fed.append(name)
            elif not (include_outputs and value.is_graph_output()):
                exposed.append(value)
        if any(v.dtype is None for v in exposed):
            from onnxrecede.engine.shapes import infer_shapes

            infer_shapes(m)
        untyped = [v.name for v in exposed if v.dtype is None]
        if untyped:
            raise InputError(
                f"cannot probe tensor(s) {', '.join(repr(n) for n in untyped[:5])}: their "
                "element type is unknown (shape inference could not find it)"
            )
        if not include_outputs:
            graph.outputs.clear()
        graph.outputs.extend(exposed)
        self._run_names = [v.name for v in graph.outputs if v.name]
        self._wanted = set(names) | set(self.model_outputs)
        self.session = _session(m, threads)

    def run(
        self, feeds: dict[str, np.ndarray], names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The requested tensors for one batch; ``names`` restricts them to a subset."""
        run_names = self._run_names if names is None else [n for n in self._run_names if n in names]
        if run_names:
            try:
                arrays = self.session.run(run_names, feeds)
            except Exception as e:  # ORT raises its own InvalidArgument/Fail types
                raise InputError(f"onnxruntime cannot run the model on this data: {e}") from None
        else:
            arrays = []
        out = {n: a for n, a in zip(run_names, arrays) if n in self._wanted}
        out.update({n: feeds[n] for n in self._fed})
        out.update(self._constants)
        return out

    def over(
        self,
        samples: Samples,
        batch_size: int,
        progress: Progress | None = None,
        stage: str = "probe",
    ) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        """Each batch of ``samples`` with what :meth:`run` returns for it (case 4)."""
        size = self.fixed_batch or batch_size
        total = samples.num_batches(size)
        for done, (batch, n) in enumerate(model_batches(samples, size, self.fixed_batch), 1):
            arrays = self.run(batch.feeds)
            if n < size:
                arrays = {k: v[:n] if v.ndim and len(v) == size else v for k, v in arrays.items()}
                batch = Batch({k: v[:n] for k, v in batch.feeds.items()}, batch.labels)
            yield batch, arrays
            if progress is not None:
                progress(stage, done, total)


def fixed_batch(graph: ir.Graph) -> int | None:
    """The batch size a model's inputs fix (their common static first dim), or None."""
    dims = {
        v.shape[0]
        for v in graph.inputs
        if not v.is_initializer() and v.shape is not None and len(v.shape) > 0
    }
    fixed = {d for d in dims if isinstance(d, int)}
    return fixed.pop() if len(fixed) == 1 and len(dims) == 1 else None


def model_batches(
    samples: Samples, batch_size: int, fixed: int | None
) -> Iterator[tuple[Batch, int]]:
    """Batches to feed and their real sample counts; with a ``fixed`` batch size the last one is
    padded by repeating its last sample."""
    for batch in samples.batches(fixed or batch_size):
        n = len(next(iter(batch.feeds.values())))
        if fixed is not None and n < fixed:
            feeds = {
                k: np.concatenate([v, np.repeat(v[-1:], fixed - n, axis=0)])
                for k, v in batch.feeds.items()
            }
            batch = Batch(feeds, batch.labels)
        yield batch, n


def probe(
    model: ModelSource,
    samples: Samples,
    names: Sequence[str],
    *,
    batch_size: int = 32,
    include_outputs: bool = False,
    progress: Progress | None = None,
    stage: str = "probe",
) -> Iterator[dict[str, np.ndarray]]:
    """Per batch of ``samples``: the tensors ``names`` (and the outputs if asked) of ``model``."""
    p = Probe(model, names, include_outputs=include_outputs)
    for _, arrays in p.over(samples, batch_size, progress, stage):
        yield arrays


def _session(model: ir.Model, threads: int | None) -> Any:
    if initializer_bytes(model) < EXTERNAL_DATA_THRESHOLD:
        # a model read with external data references its files by a path relative to the
        # model's folder, which a serialised payload has lost: carry the weights inline
        ir.external_data.load_to_model(model)
        payload = ir.serde.serialize_model(model).SerializeToString()
        return _cpu_session(payload, threads)
    with tempfile.TemporaryDirectory(prefix="onnxrecede-probe-") as tmp:
        path = os.path.join(tmp, "probe.onnx")
        ir.save(model, path, external_data="probe.onnx.data")
        return _cpu_session(path, threads)


def _cpu_session(payload: bytes | str, threads: int | None) -> Any:
    try:
        return runtime.cpu_session(payload, threads)
    except RuntimeUnavailableError:
        raise
    except Exception as e:
        raise InputError(f"onnxruntime cannot load the model: {e}") from None
