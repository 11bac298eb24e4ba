"""Data files written the way their real sources write them, and hostile variants of them.

:func:`write_cifar_batch` writes a batch as the CIFAR python batches are written: ``pickle.dump``
of a dict with a numpy uint8 array and lists, protocol 2 (the published files use protocol 2),
bytes keys (what Python 3 reads from them). :func:`python2_cifar_batch` builds the bytes a
Python 2 ``cPickle.dump`` writes (str keys as SHORT_BINSTRING, the array data as BINSTRING,
``numpy.core.multiarray`` names). :func:`v8_attack` is the crafted batch of issue 14: a
``dtype('V8')`` whose state plants an object field while its flags say it holds none.
"""

from __future__ import annotations

import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def cifar_dict(n: int, seed: int = 0, key: str = "labels") -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch 1 of 1",
        key.encode(): [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_cifar_batch(path: Path, batch: dict[bytes, object], protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return path


def _short(text: bytes) -> bytes:
    return b"U" + bytes([len(text)]) + text


def python2_cifar_batch(x: np.ndarray, labels: Sequence[int]) -> bytes:
    """The bytes of ``cPickle.dump({'data': x, 'labels': labels}, f, 2)`` under Python 2."""
    dtype = b"cnumpy\ndtype\n" + _short(b"u1") + b"K\x00K\x01\x87R"
    dtype += b"(K\x03" + _short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"".join(b"J" + struct.pack("<i", d) for d in x.shape) + b"\x86"
    raw = x.tobytes()
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _short(b"b")
    array += b"\x87R(K\x01" + shape + dtype + b"\x89T" + struct.pack("<i", len(raw)) + raw + b"tb"
    items = b"".join(b"K" + bytes([v]) for v in labels)
    return b"\x80\x02}q\x01(" + _short(b"data") + array + _short(b"labels") + b"](" + items + b"eu."


def _text(t: str) -> bytes:
    b = t.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _dtype(name: str, state: bytes) -> bytes:
    return b"cnumpy\ndtype\n" + _text(name) + b"\x89\x88\x87R" + state + b"b"


def _state(names: bytes, fields: bytes, elsize: int, align: int, flags: int) -> bytes:
    ints = b"".join(b"J" + struct.pack("<i", v) for v in (elsize, align, flags))
    return b"(K\x03" + _text("|") + b"N" + names + fields + ints + b"t"


def v8_attack() -> bytes:
    """A batch whose 'data' is an ndarray of 8 bytes 0x41 read through an object field."""
    obj = _dtype("O8", _state(b"N", b"N", -1, -1, 63))
    fields = b"}" + _text("f") + obj + b"K\x00\x86s"
    v8 = _dtype("V8", _state(_text("f") + b"\x85", fields, 8, 1, 0))
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"
    array += b"(K\x01K\x01\x85" + v8 + b"\x89C\x08" + b"A" * 8 + b"tb"
    return b"\x80\x02}" + _text("data") + array + b"s" + _text("labels") + b"]K\x00as."


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A version 1.0 .npy header (padded as numpy pads it) claiming ``shape`` of ``descr``."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` RGB pixels (no pixel data follows)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
