"""Output safety: no write may touch a file the command reads, or another of its writes.

Before any work, a command lists every path it reads (the model, each external-data file the
model references, the importances, calibration or input files) and every path it writes (the
output, its external-data file, the report, the JSON result, a plot), and calls
:func:`check_paths`. Two paths are the same file when they resolve to the same real path
(symlinks, ``..``) or, for files that exist, share device and inode (hard links). A write is
refused (exit code 2) when it is the same file as a read or another write, when its target
exists and is not a regular file (a folder, a FIFO, a device), when it is a symbolic link whose
target does not exist (a dangling link: nothing is ever created through it), or when its folder
cannot be written. A link to an existing file that is not a read is replaced by the output (the
file it pointed to is left as it was); missing folders of an output are created only when the
outputs are moved into place, after the work succeeded.
"""

from __future__ import annotations

import mmap
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.descriptor import Descriptor

from onnxrecede.errors import InputError
from onnxrecede.io.outputs import existing_folder
from onnxrecede.io.wire import wire_fields

Role = tuple[str, "str | os.PathLike[str]"]


@dataclass(frozen=True)
class _File:
    role: str
    given: str
    real: str
    inode: tuple[int, int] | None

    @classmethod
    def of(cls, role: str, path: str | os.PathLike[str]) -> _File:
        given = os.fspath(path)
        try:
            st = os.stat(given)
            inode: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            inode = None
        return cls(role, given, os.path.realpath(given), inode)

    def same(self, other: _File) -> bool:
        return self.real == other.real or (self.inode is not None and self.inode == other.inode)

    def label(self) -> str:
        return f"{self.role} {self.given}" if self.role else self.given


def check_paths(reads: Iterable[Role], writes: Iterable[Role]) -> None:
    """Refuse, with :class:`InputError`, any write that could touch a read or another write.

    A read that is a folder (an image folder, say) refuses every write inside it.
    """
    read_files = [_File.of(role, p) for role, p in reads if p is not None]
    write_files = [_File.of(role, p) for role, p in writes if p is not None]
    for i, w in enumerate(write_files):
        for r in read_files:
            if w.same(r):
                raise InputError(
                    f"{w.label()} is the {r.label()} that onnxrecede reads; an input is never "
                    f"overwritten. Choose another path for {w.role or 'the output'}"
                )
            if os.path.isdir(r.real) and w.real.startswith(r.real.rstrip(os.sep) + os.sep):
                raise InputError(
                    f"{w.label()} is inside the {r.label()} that onnxrecede reads; write it "
                    "somewhere else"
                )
        for other in write_files[:i]:
            if w.same(other):
                raise InputError(
                    f"{w.label()} and {other.label()} are the same file; give each output "
                    "its own path"
                )
        _check_target(w)


def _check_target(w: _File) -> None:
    if os.path.islink(w.given) and not os.path.exists(w.given):
        raise InputError(
            f"{w.label()} is a symbolic link to {os.readlink(w.given)}, which does not exist; "
            "onnxrecede never writes through a dangling link. Remove the link or choose "
            "another path"
        )
    try:
        st = os.stat(w.given)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"cannot use {w.label()}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        raise InputError(
            f"{w.label()} is {kind}, not a regular file; onnxrecede only replaces regular "
            "files. Choose a file path"
        )
    folder = existing_folder(Path(os.path.abspath(w.given)).parent)
    if not folder.is_dir():
        raise InputError(
            f"cannot write {w.label()}: {folder} is not a folder. Choose a path in a folder"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".onnxrecede-check-", dir=folder)
    except OSError as e:
        raise InputError(
            f"cannot write {w.label()}: folder {folder} is not writable ({e.strerror}). "
            "Choose a writable path"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


# ----------------------------------------------------------------- external data, without loading

#: messages that can hold a TensorProto somewhere below them
_WALKED = {
    onnx.ModelProto.DESCRIPTOR.full_name,
    onnx.GraphProto.DESCRIPTOR.full_name,
    onnx.NodeProto.DESCRIPTOR.full_name,
    onnx.AttributeProto.DESCRIPTOR.full_name,
    onnx.FunctionProto.DESCRIPTOR.full_name,
    onnx.SparseTensorProto.DESCRIPTOR.full_name,
}
_TENSOR = onnx.TensorProto.DESCRIPTOR
_EXTERNAL_FIELD = _TENSOR.fields_by_name["external_data"].number


def _locations(buf: mmap.mmap | bytes, start: int, end: int, desc: Descriptor) -> Iterator[str]:
    for number, wire, lo, hi in wire_fields(buf, start, end):
        if wire != 2:
            continue
        if desc is _TENSOR:
            if number == _EXTERNAL_FIELD:
                entry = {n: bytes(buf[a:b]) for n, w, a, b in wire_fields(buf, lo, hi) if w == 2}
                if entry.get(1) == b"location" and 2 in entry:
                    yield entry[2].decode("utf-8", "replace")
            continue
        field = desc.fields_by_number.get(number)
        sub = field.message_type if field is not None else None
        if sub is None:
            continue
        if sub is _TENSOR or sub.full_name in _WALKED:
            yield from _locations(buf, lo, hi, sub)


def external_data_files(model_path: str | os.PathLike[str]) -> list[Path]:
    """Every external-data file that the model at ``model_path`` references.

    Reads only the protobuf field headers (tensor payloads are skipped), so it costs little
    even for a large model. A file that cannot be parsed yields no locations: loading it will
    fail with a clearer message.
    """
    path = Path(os.fspath(model_path))
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            locations = list(dict.fromkeys(_locations(buf, 0, len(buf), onnx.ModelProto.DESCRIPTOR)))
    except (OSError, ValueError):
        return []
    return [path.parent / loc for loc in locations]


def model_reads(model_path: str | os.PathLike[str]) -> Sequence[Role]:
    """The model and its external-data files, as ``(role, path)`` reads for :func:`check_paths`."""
    reads: list[Role] = [("model", model_path)]
    reads.extend(("external data of the model", p) for p in external_data_files(model_path))
    return reads


def data_reads(source: str | None, role: str, *, training: bool = False) -> list[Role]:
    """Every file (and image folder) a data source reads, as reads for :func:`check_paths`
    (:func:`onnxrecede.data.files.source_files`; ``training``: the trainer's ``--data``)."""
    if source is None:
        return []
    from onnxrecede.data.files import source_files

    return [(role, p) for p in source_files(source, training=training)]


@dataclass(frozen=True)
class PruneLabels:
    """How errors name the paths of a prune: the API's argument names, or the CLI's flags."""

    output: str = "output"
    importances: str = "importances"
    calibration: str = "calibration data"


#: the command line's names for :func:`prune_file_paths`
CLI_LABELS = PruneLabels("-o", "--importances", "--calibration")


def prune_file_paths(
    model: object,
    importances: object,
    output: str | os.PathLike[str],
    calibration: object = None,
    labels: PruneLabels = PruneLabels(),
) -> tuple[list[Role], list[Role]]:
    """The reads and writes of :func:`onnxrecede.api.prune_file`, for :func:`check_paths`.

    Reads: the model file and its external data (when ``model`` is a path), the importances
    file (when a path), the calibration data (when a source string). Writes: ``output`` and
    ``output.data``. In-memory models, importances and samples read no file.
    """
    reads: list[Role] = []
    if isinstance(model, (str, os.PathLike)):
        reads.extend(model_reads(model))
    if isinstance(importances, (str, os.PathLike)):
        reads.append((labels.importances, importances))
    if isinstance(calibration, str):
        reads.extend(data_reads(calibration, labels.calibration))
    writes: list[Role] = [
        (labels.output, output),
        (f"the external data of {labels.output}", f"{os.fspath(output)}.data"),
    ]
    return reads, writes
