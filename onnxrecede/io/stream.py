"""Model files without holding a model's weights in memory twice.

Reading: :func:`load` scans an inline ``.onnx`` file's protobuf wire format for the raw data of
every large initializer of the main graph, parses the rest as usual, and turns each large tensor
into a :class:`FileTensor`: a read-only memory map of just its bytes in the input file, made on
each access and never cached, so the weights cost no memory until a caller reads them, and only
while it holds them. Files with external data, text formats and anything unusual (a field given
twice, sub-byte types) take onnx-ir's own loader.

Writing: :func:`write_model` saves inline by serialising the model without the large tensors'
data and streaming each tensor's bytes into the file after its header, one tensor at a time
(protobuf accepts fields in any order); with external data, onnx-ir writes the data file tensor
by tensor through each tensor's ``tofile``.

Masking: :class:`ZeroedTensor` is a tensor with some channels zeroed, computed from its source
in blocks of rows when written (the masked reference of verification).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx_ir import _core

from onnxrecede.io.wire import wire_fields

#: tensors smaller than this stay in memory (inline, parsed with the rest of the model)
LAZY_MIN_BYTES = 1 << 16
#: files smaller than this are read whole: nothing to gain
LAZY_MIN_FILE_BYTES = 1 << 24
#: bytes per block when a tensor is copied or masked
BLOCK_BYTES = 1 << 23

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_NAME, _TENSOR_RAW_DATA = 8, 9  # TensorProto.name, raw_data
_TENSOR_EXTERNAL, _TENSOR_LOCATION = 13, 14  # TensorProto.external_data, data_location
_LEN = 2  # wire type of length-delimited fields


class _Unsupported(Exception):
    """The file is not a plain inline binary model; use the ordinary loader."""


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _encode_varint(field << 3 | wire_type)


def _fields(buf: Any, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, field start, value start, field end) of each field in ``buf[start:end]``."""
    first = start
    try:
        for number, _, value_start, value_end in wire_fields(buf, start, end):
            if number == 0:
                raise _Unsupported("field number 0")
            yield number, first, value_start, value_end
            first = value_end
    except ValueError as e:  # truncated or unknown wire data
        raise _Unsupported(str(e)) from None


# Reading ----------------------------------------------------------------------------------------


class SourceFile:
    """A model file held open: its tensors read the file as loaded, even after the path is
    replaced (say by saving a pruned model over it) or removed."""

    __slots__ = ("_file", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 - lives as long as its tensors

    def fileno(self) -> int:
        return self._file.fileno()

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


class FileTensor(_core.TensorBase):  # type: ignore[misc]
    """Little-endian raw data at ``offset`` in a file, mapped on access and never cached."""

    __slots__ = ("_dtype", "_length", "_offset", "_shape", "_source")

    def __init__(
        self,
        source: SourceFile | str | os.PathLike[str],
        offset: int,
        length: int,
        dtype: ir.DataType,
        shape: ir.Shape,
        *,
        name: str | None = None,
        doc_string: str | None = None,
        metadata_props: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name=name, doc_string=doc_string, metadata_props=metadata_props)
        self._source = source if isinstance(source, SourceFile) else SourceFile(source)
        self._offset = offset
        self._length = length
        self._dtype = dtype
        self._shape = shape
        self._shape.freeze()

    @property
    def dtype(self) -> ir.DataType:  # type: ignore[override]
        return self._dtype

    @property
    def shape(self) -> ir.Shape:  # type: ignore[override]
        return self._shape

    @property
    def raw(self) -> SourceFile:
        return self._source

    @property
    def path(self) -> str:
        return self._source.path

    @property
    def offset(self) -> int:
        return self._offset

    def _np_dtype(self) -> np.dtype:
        return np.dtype(self._dtype.numpy()).newbyteorder("<")

    def numpy(self) -> np.ndarray:
        """A read-only view of the file; its pages are unmapped when the array is dropped."""
        dims = tuple(int(d) for d in self._shape.numpy())
        if self._length == 0:
            return np.empty(dims, dtype=self._np_dtype())
        gran = mmap.ALLOCATIONGRANULARITY
        base = self._offset - self._offset % gran
        mapped = mmap.mmap(
            self._source.fileno(),
            self._offset - base + self._length,
            access=mmap.ACCESS_READ,
            offset=base,
        )
        array = np.frombuffer(
            mapped, dtype=self._np_dtype(), count=self.size, offset=self._offset - base
        )
        return array.reshape(dims)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __dlpack__(self, *, stream: Any = None) -> Any:
        raise NotImplementedError("FileTensor does not support DLPack; call numpy()")

    def __dlpack_device__(self) -> tuple[int, int]:
        raise NotImplementedError("FileTensor does not support DLPack; call numpy()")

    def __repr__(self) -> str:
        return f"{self._repr_base()}(path={self.path!r}, offset={self._offset}, name={self.name!r})"

    def _read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._source.fileno(), length, self._offset + offset)
        if len(data) != length:
            raise OSError(f"{self.path} is shorter than expected (tensor '{self.name}')")
        return data

    def tobytes(self) -> bytes:
        return self._read(0, self._length)

    def tofile(self, file: BinaryIO) -> None:
        done = 0
        while done < self._length:
            n = min(BLOCK_BYTES, self._length - done)
            file.write(self._read(done, n))
            done += n

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the first axis, as a new writable array."""
        dims = [int(d) for d in self._shape.numpy()]
        out = np.empty([stop - start, *dims[1:]], dtype=self._np_dtype())
        row = out.nbytes // max(1, stop - start)
        into = out.reshape(-1).view(np.uint8).data
        if os.preadv(self._source.fileno(), [into], self._offset + start * row) != out.nbytes:
            raise OSError(f"{self.path} is shorter than expected (tensor '{self.name}')")
        return out


def _plain_dtype(dtype: ir.DataType) -> bool:
    return dtype.bitwidth % 8 == 0 and dtype != ir.DataType.STRING


def read_rows(tensor: ir.TensorProtocol, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``tensor``'s first axis as a new writable array, reading no more."""
    if isinstance(tensor, FileTensor):
        return tensor.read_rows(start, stop)
    if (
        isinstance(tensor, ir.ExternalTensor)
        and _plain_dtype(tensor.dtype)
        and len(tensor.shape) > 0
    ):
        dims = [int(d) for d in tensor.shape.numpy()]
        dtype = np.dtype(tensor.dtype.numpy()).newbyteorder("<")
        row = int(np.prod(dims[1:], dtype=np.int64)) * dtype.itemsize
        piece = FileTensor(
            tensor.path, (tensor.offset or 0) + start * row, (stop - start) * row, tensor.dtype,
            ir.Shape([stop - start, *dims[1:]]),
        )  # fmt: skip
        return piece.read_rows(0, stop - start)
    array = np.asarray(tensor.numpy())
    return np.array(array[start:stop] if array.ndim else array)


def _format_is_protobuf(path: Path) -> bool:
    registry = onnx.serialization.registry
    fmt = registry.get_format_from_file_extension(path.suffix) if path.suffix else None
    return fmt in (None, "protobuf")


def load(path: str | os.PathLike[str]) -> ir.Model:
    """Load ``path``; large inline initializers become :class:`FileTensor` views of the file."""
    path = Path(os.fspath(path))
    if path.stat().st_size < LAZY_MIN_FILE_BYTES or not _format_is_protobuf(path):
        return ir.load(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            skeleton, lazy = _skeleton(buf)
        proto = onnx.ModelProto()
        proto.ParseFromString(skeleton)
        del skeleton
    except (_Unsupported, ValueError, DecodeError):
        return ir.load(path)
    model = ir.serde.deserialize_model(proto)
    del proto
    ir.external_data.set_base_dir(model.graph, path.resolve().parent)
    source = SourceFile(path.resolve())
    for name, (offset, length) in lazy.items():
        value = model.graph.initializers.get(name)
        stub = value.const_value if value is not None else None
        if stub is None or not _plain_dtype(stub.dtype) or stub.nbytes != length:
            return ir.load(path)  # the stripped tensor does not add up: read it normally
        value.const_value = FileTensor(  # type: ignore[union-attr]
            source, offset, length, stub.dtype, ir.Shape(stub.shape.numpy()), name=name,
            doc_string=stub.doc_string, metadata_props=dict(stub.metadata_props) or None,
        )  # fmt: skip
    return model


def _skeleton(buf: Any) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The model's bytes without the raw data of its large initializers, and where that data is."""
    lazy: dict[str, tuple[int, int]] = {}
    head: list[bytes] = []
    graph: bytes | None = None
    for field, first, start, end in _fields(buf, 0, len(buf)):
        if field != _MODEL_GRAPH:
            head.append(buf[first:end])
            continue
        if graph is not None:
            raise _Unsupported("graph given twice")
        graph = _graph_skeleton(buf, start, end, lazy)
        head.append(_key(_MODEL_GRAPH, _LEN) + _encode_varint(len(graph)) + graph)
    if graph is None or not lazy:
        raise _Unsupported("nothing to read lazily")
    return b"".join(head), lazy


def _graph_skeleton(buf: Any, start: int, end: int, lazy: dict[str, tuple[int, int]]) -> bytes:
    parts: list[bytes] = []
    for field, first, value_start, value_end in _fields(buf, start, end):
        if field != _GRAPH_INITIALIZER:
            parts.append(buf[first:value_end])
            continue
        tensor = _tensor_skeleton(buf, value_start, value_end, lazy)
        if tensor is None:
            parts.append(buf[first:value_end])
        else:
            parts.append(_key(_GRAPH_INITIALIZER, _LEN) + _encode_varint(len(tensor)) + tensor)
    return b"".join(parts)


def _tensor_skeleton(
    buf: Any, start: int, end: int, lazy: dict[str, tuple[int, int]]
) -> bytes | None:
    """The tensor without its raw data, or None to keep it whole."""
    raw: list[tuple[int, int, int]] = []
    name: bytes | None = None
    for field, first, value_start, value_end in _fields(buf, start, end):
        if field == _TENSOR_RAW_DATA:
            raw.append((first, value_start, value_end))
        elif field == _TENSOR_NAME:
            name = bytes(buf[value_start:value_end])
        elif field in (_TENSOR_EXTERNAL, _TENSOR_LOCATION):
            return None
    if len(raw) != 1 or name is None:
        return None
    first, value_start, value_end = raw[0]
    if value_end - value_start < LAZY_MIN_BYTES:
        return None
    key = name.decode("utf-8", "replace")
    if key in lazy:
        raise _Unsupported(f"initializer '{key}' given twice")
    lazy[key] = (value_start, value_end - value_start)
    return bytes(buf[start:first]) + bytes(buf[value_end:end])


def external_view(path: str | os.PathLike[str], view: str | os.PathLike[str]) -> bool:
    """Write to ``view`` (in ``path``'s folder) the model at ``path`` with each large inline
    initializer turned into an external-data reference to its bytes inside ``path``.

    The view reads the very bytes of ``path``, but a checker or ONNX Runtime given the view
    maps the weights instead of parsing and copying them. False (nothing written) when
    ``path`` has no large inline initializer or is not a plain binary model.
    """
    path, view = Path(os.fspath(path)), Path(os.fspath(view))
    if path.resolve().parent != view.resolve().parent:
        raise ValueError("the view must lie in the model's folder")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            skeleton, lazy = _skeleton(buf)
    except (_Unsupported, ValueError):
        return False
    proto = onnx.ModelProto()
    proto.ParseFromString(skeleton)
    for tensor in proto.graph.initializer:
        if tensor.name not in lazy:
            continue
        offset, length = lazy[tensor.name]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", path.name), ("offset", offset), ("length", length)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    view.write_bytes(proto.SerializeToString())
    return True


# Writing ----------------------------------------------------------------------------------------


def write_model(
    model: ir.Model, path: str | os.PathLike[str], external_data: str | None = None
) -> None:
    """Write ``model`` to ``path`` (inline, or with weights in ``external_data`` beside it).

    Holds at most one block of tensor data beyond what the model already holds. The model is
    left unchanged.
    """
    path = Path(os.fspath(path))
    if external_data is not None:
        ir.save(model, path, external_data=external_data, alignment=4096)
        return
    _write_inline(model, path)


class _Placeholder(ir.ExternalTensor):  # type: ignore[misc]
    """Stands in for a tensor while the model is serialised without its data."""


def serialize_without_data(model: ir.Model) -> tuple[onnx.ModelProto, dict[str, ir.TensorProtocol]]:
    """``model`` as a proto whose large initializers are external-data stubs pointing nowhere,
    and those initializers' tensors by name. The model is left unchanged."""
    streamed: dict[str, ir.TensorProtocol] = {}
    swapped: list[tuple[ir.Value, ir.TensorProtocol]] = []
    try:
        for value in model.graph.initializers.values():
            tensor = value.const_value
            if tensor is None or tensor.nbytes < LAZY_MIN_BYTES or value.name in streamed:
                continue
            if not _plain_dtype(tensor.dtype):
                continue
            assert value.name is not None
            streamed[value.name] = tensor
            swapped.append((value, tensor))
            value.const_value = _Placeholder(
                "onnxrecede-placeholder", 0, tensor.nbytes, tensor.dtype,
                shape=ir.Shape(tensor.shape.numpy()), name=value.name,
                doc_string=tensor.doc_string, metadata_props=dict(tensor.metadata_props) or None,
            )  # fmt: skip
        proto = ir.serde.serialize_model(model)
    finally:
        for value, tensor in swapped:
            value.const_value = tensor
    return proto, streamed


def _write_inline(model: ir.Model, path: Path) -> None:
    proto, streamed = serialize_without_data(model)
    inits = list(proto.graph.initializer)
    del proto.graph.initializer[:]
    pieces: list[tuple[bytes, ir.TensorProtocol | None]] = []
    graph_len = 0
    for tp in inits:
        tensor = streamed.get(tp.name)
        if tensor is None or tp.data_location != onnx.TensorProto.EXTERNAL:
            body = tp.SerializeToString()
            head = _key(_GRAPH_INITIALIZER, _LEN) + _encode_varint(len(body)) + body
            pieces.append((head, None))
            graph_len += len(head)
            continue
        del tp.external_data[:]
        tp.ClearField("data_location")
        body = tp.SerializeToString()
        n = tensor.nbytes
        raw_head = _key(_TENSOR_RAW_DATA, _LEN) + _encode_varint(n)
        tensor_len = len(body) + len(raw_head) + n
        head = _key(_GRAPH_INITIALIZER, _LEN) + _encode_varint(tensor_len) + body + raw_head
        pieces.append((head, tensor))
        graph_len += len(head) + n
    rest = proto.graph.SerializeToString()
    graph_len += len(rest)
    proto.ClearField("graph")
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())
        f.write(_key(_MODEL_GRAPH, _LEN) + _encode_varint(graph_len))
        f.write(rest)
        for head, data in pieces:
            f.write(head)
            if data is not None:
                _write_tensor(f, data)


def _write_tensor(f: BinaryIO, tensor: ir.TensorProtocol) -> None:
    start = f.tell()
    if hasattr(tensor, "tofile"):
        tensor.tofile(f)
    else:
        f.write(tensor.tobytes())
    if f.tell() - start != tensor.nbytes:
        raise OSError(
            f"tensor '{tensor.name}' wrote {f.tell() - start} bytes instead of {tensor.nbytes}"
        )


# Masking ----------------------------------------------------------------------------------------

ZeroOps = Sequence[tuple[int, str, tuple[int, ...]]]


class ZeroedTensor(_core.TensorBase):  # type: ignore[misc]
    """``source`` with the indices of each ``(axis, "zero", indices)`` op set to zero, lazily.

    :meth:`tofile` computes it in blocks of rows; :meth:`numpy` builds the whole array.
    """

    __slots__ = ("_ops", "_source")

    def __init__(self, source: ir.TensorProtocol, ops: ZeroOps, name: str | None) -> None:
        super().__init__(name=name, doc_string=source.doc_string)
        if any(op != "zero" for _, op, _ in ops):
            raise ValueError("ZeroedTensor only zeroes")
        self._source = source
        self._ops = tuple(ops)

    @property
    def dtype(self) -> ir.DataType:  # type: ignore[override]
        return self._source.dtype

    @property
    def shape(self) -> ir.Shape:  # type: ignore[override]
        return ir.Shape(self._source.shape.numpy())

    @property
    def raw(self) -> ir.TensorProtocol:
        return self._source

    def _zero(self, block: np.ndarray, start: int, stop: int) -> np.ndarray:
        for axis, _, idx in self._ops:
            index = np.asarray(idx, dtype=np.int64)
            if axis == 0 and block.ndim:
                index = index[(index >= start) & (index < stop)] - start
            where: list[Any] = [slice(None)] * block.ndim
            where[axis] = index
            block[tuple(where)] = 0
        return block

    def numpy(self) -> np.ndarray:
        array = np.array(self._source.numpy())
        return self._zero(array, 0, array.shape[0] if array.ndim else 1)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __dlpack__(self, *, stream: Any = None) -> Any:
        return self.numpy().__dlpack__(stream=stream)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.numpy().__dlpack_device__()

    def __repr__(self) -> str:
        return f"{self._repr_base()}(source={self._source!r}, name={self.name!r})"

    def tobytes(self) -> bytes:
        array = self.numpy()
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()

    def tofile(self, file: BinaryIO) -> None:
        dims = [int(d) for d in self.shape.numpy()]
        if not dims or not _plain_dtype(self.dtype):
            file.write(self.tobytes())
            return
        row = max(1, int(np.prod(dims[1:], dtype=np.int64)) * self.dtype.itemsize)
        step = max(1, BLOCK_BYTES // int(row))
        for start in range(0, dims[0], step):
            stop = min(dims[0], start + step)
            block = self._zero(read_rows(self._source, start, stop), start, stop)
            block = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<"))
            file.write(block.reshape(-1).view(np.uint8).data)
