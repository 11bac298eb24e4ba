"""Loading and saving models: lazy external data, safe locations, atomic output."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import onnx
import onnx_ir as ir

from onnxrecede.errors import InputError
from onnxrecede.io import stream as streamio
from onnxrecede.io.outputs import Outputs

logger = logging.getLogger(__name__)

#: protobuf cannot serialise a model over 2 GiB: larger ones are saved with external data
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**24

ModelSource = str | os.PathLike[str] | ir.Model | onnx.ModelProto


def load_model(source: ModelSource) -> ir.Model:
    """A private copy of ``source`` as an onnx-ir model; the source itself is never modified."""
    if isinstance(source, ir.Model):
        return legacy_dims_dynamic(source.clone())
    if isinstance(source, onnx.ModelProto):
        return legacy_dims_dynamic(ir.serde.deserialize_model(source))
    path = Path(os.fspath(source))
    if not path.exists():
        raise InputError(f"model file not found: {path}")
    if not path.is_file():
        raise InputError(f"model {path} is not a file; give the path of an .onnx file")
    if path.stat().st_size == 0:
        raise InputError(f"model file {path} is empty (0 bytes); re-export or copy it again")
    try:
        model = streamio.load(path)  # large inline weights stay in the file until read
    except Exception as e:  # protobuf raises DecodeError, onnx-ir ValueError, ...
        raise InputError(f"cannot read {path} as an ONNX model: {e}") from None
    if not model.opset_imports and len(model.graph) == 0 and not model.graph.outputs:
        raise InputError(
            f"{path} is not an ONNX model (no opset, no nodes, no outputs); check the file"
        )
    _check_external_data(model, path)
    return legacy_dims_dynamic(model)


def legacy_dims_dynamic(model: ir.Model) -> ir.Model:
    """Make ``-1`` and ``0`` dims of the graph's inputs and outputs dynamic (in place).

    Old exporters (paddle2onnx, some TensorFlow converters) write a dynamic batch as the
    dim value ``-1`` (or ``0``), which ONNX does not define; ONNX Runtime reads it as dynamic.
    Everything downstream (shape inference, cost, data batches) then sees an unknown dim, and
    the model written says so the standard way.
    """
    graph = model.graph
    for value in [*graph.inputs, *graph.outputs]:
        shape = value.shape
        if shape is not None and any(isinstance(d, int) and d <= 0 for d in shape):
            dims = [None if isinstance(d, int) and d <= 0 else d for d in shape]
            value.shape = ir.Shape(dims)
            logger.debug("input/output '%s': legacy dims <= 0 read as dynamic", value.name)
    return model


def _check_external_data(model: ir.Model, path: Path) -> None:
    """Reject external-data locations that escape the model's folder (CVE-2022-25882 and kin)."""
    base = path.resolve().parent
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        location = Path(tensor.location)
        target = (base / location).resolve()
        if location.is_absolute() or base not in target.parents:
            raise InputError(
                f"initializer '{value.name}' of {path} points outside the model's folder "
                f"('{tensor.location}'); refusing to read it"
            )
        if (base / location).is_symlink():
            raise InputError(
                f"initializer '{value.name}' of {path} reads external data through a symlink "
                f"('{tensor.location}'); refusing to read it"
            )
        if not target.is_file():
            raise InputError(
                f"external data file '{tensor.location}' of {path} is missing; keep it beside the model"
            )


def initializer_bytes(model: ir.Model) -> int:
    return sum(
        v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None
    )


def write_model_files(
    model: ir.Model, path: str | os.PathLike[str], external_data: bool | None = None
) -> list[Path]:
    """Write ``model`` to ``path``, not atomically (callers stage it: :class:`Outputs`).

    Weights go to ``PATH.data`` when ``external_data`` is True, or (None) when they exceed
    2 GB. Returns the files written, the model first.
    """
    target = Path(os.fspath(path))
    external = (
        initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
        if external_data is None
        else external_data
    )
    data = target.with_name(f"{target.name}.data")
    streamio.write_model(model, target, data.name if external else None)
    return [target, data] if external else [target]


def save_model(
    model: ir.Model, path: str | os.PathLike[str], external_data: bool | None = None
) -> list[Path]:
    """Save atomically; external data (``PATH.data``) only when asked or when over 2 GB.

    Returns the files written, the model first.
    """
    target = Path(os.fspath(path))
    with Outputs() as outputs:
        outputs.staged(f"{target}.data")  # moved into place only if written
        outputs.write(target, lambda staged: write_model_files(model, staged, external_data))
        done = outputs.commit()
    return sorted(done, key=lambda p: p.name != target.name)
