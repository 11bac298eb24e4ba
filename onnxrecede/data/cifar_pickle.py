"""Read a CIFAR python-format batch without unpickling it.

The CIFAR-10/100 ``python`` batches are pickles of a dict holding a numpy ``uint8`` array
(``data``), lists of ints (``labels``, ``fine_labels``, ``coarse_labels``), a str or bytes
``batch_label`` and a list of ``filenames``. Unpickling them, even with a restricted
``find_class``, lets a crafted file build numpy objects with arbitrary internal state (a
``dtype('V8')`` whose state claims no object field while it holds one makes numpy follow file
bytes as a pointer). So this module interprets the pickle opcodes itself and never calls a
constructor that the file names:

1. Plain values are built as Python ``dict``, ``list``, ``tuple``, ``str``, ``bytes``, ``int``,
   ``float``, ``bool`` and ``None`` (the caller checks which it wants where). Every other
   opcode (sets, persistent ids, extensions, object instantiation) is refused.
2. Only these globals may be named, and each is a token, never imported:
   ``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` (the arrays of
   protocols 0-4), ``numpy[._]core.numeric._frombuffer`` (protocol 5) and ``_codecs.encode``
   (how Python 3 writes bytes at protocol 2).
3. ``numpy.dtype`` is accepted for the integer types only, with the exact default state numpy
   writes (no fields, no subarray, no flags); ``_codecs.encode`` only for ``latin1``.
4. An array is built from its raw bytes with :func:`numpy.frombuffer` after the byte count has
   been checked against the shape and the item size: never a pointer, never an object.

Anything else raises :class:`PickleRefused`, which says what was found and where.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: dtype names an array may have: integers (the images are u1; labels may be stored as arrays)
INTEGER_DTYPES = frozenset({"u1", "i1", "b1", "u2", "i2", "u4", "i4", "u8", "i8"})
_BYTE_ORDERS = frozenset({"|", "<", ">", "="})
_RECONSTRUCT = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}
_ALLOWED_GLOBALS = (
    _RECONSTRUCT | _FROMBUFFER | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
)
#: at most this many dimensions, each at most this large (CIFAR needs 2 and 50,000)
MAX_DIMS = 8
MAX_DIM = 1 << 40


class PickleRefused(ValueError):
    """The file is not a pickle of plain values and integer arrays (see the module cases)."""


def _ascii(value: Any) -> str:
    """A short name given as str (Python 3) or bytes (a Python 2 str); '?' for anything else."""
    if isinstance(value, bytes) and len(value) < 16:
        return value.decode("latin1")
    return value if isinstance(value, str) and len(value) < 16 else "?"


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass
class _DType:
    """``numpy.dtype(name, False, True)``, then its state (case 3)."""

    name: str
    order: str | None = None

    def build(self, state: Any) -> None:
        if self.order is not None:
            raise PickleRefused("a dtype is given its state twice")
        default = (None, None, None, -1, -1, 0)
        if (
            not isinstance(state, tuple)
            or len(state) != 8
            or state[0] != 3
            or _ascii(state[1]) not in _BYTE_ORDERS
            or state[2:] != default
        ):
            raise PickleRefused(f"dtype '{self.name}' has a state other than a plain integer's")
        self.order = _ascii(state[1])

    def numpy(self) -> np.dtype:
        if self.order is None:
            raise PickleRefused(f"dtype '{self.name}' is used before its state is set")
        order = "|" if self.name[1] == "1" else self.order
        return np.dtype(order + self.name)


@dataclass
class _Array:
    """``_reconstruct(ndarray, (0,), b'b')``, then its state ``(1, shape, dtype, fortran, raw)``."""

    value: np.ndarray | None = field(default=None)

    def build(self, state: Any) -> None:
        if self.value is not None:
            raise PickleRefused("an array is given its state twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4:
            raise PickleRefused("an array state is not (version, shape, dtype, order, bytes)")
        shape, dtype, fortran, raw = state
        if not isinstance(fortran, bool):
            raise PickleRefused("an array's order flag is not a bool")
        self.value = _array(raw, dtype, shape, "F" if fortran else "C")

    def result(self) -> np.ndarray:
        if self.value is None:
            raise PickleRefused("an array is never given its data")
        return self.value


def _array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """Case 4: an integer array from its raw bytes, every size checked first."""
    if not isinstance(dtype, _DType):
        raise PickleRefused("an array's dtype is not a numpy dtype")
    if not isinstance(raw, (bytes, bytearray)):
        raise PickleRefused("an array's data is not raw bytes (an object array?)")
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)
    ):
        raise PickleRefused(f"an array's shape is not up to {MAX_DIMS} sizes")
    if order not in ("C", "F"):
        raise PickleRefused("an array's order is not C or F")
    dt = dtype.numpy()
    count = 1
    for d in shape:
        count *= d
    if count * dt.itemsize != len(raw):
        raise PickleRefused(
            f"an array of shape {shape} and dtype {dt} needs {count * dt.itemsize} bytes, "
            f"the file holds {len(raw)}"
        )
    return np.frombuffer(bytearray(raw), dtype=dt).reshape(shape, order=order)


def _reduce(func: Any, args: Any) -> Any:
    """The allowed calls (cases 2 and 3), each checked and done by hand."""
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise PickleRefused("the file calls something that is not an allowed global")
    key = (func.module, func.name)
    if key == ("_codecs", "encode"):
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise PickleRefused("_codecs.encode is only accepted as (str, 'latin1')")
        try:
            return args[0].encode("latin1")
        except UnicodeEncodeError:
            raise PickleRefused("a latin1 string holds a character above 255") from None
    if key == ("numpy", "dtype"):
        name = _ascii(args[0]) if args else "?"
        if len(args) != 3 or name not in INTEGER_DTYPES or args[1:] != (0, 1):
            raise PickleRefused(
                f"dtype '{name}' is refused: only the integer types {sorted(INTEGER_DTYPES)}"
            )
        return _DType(name)
    if key in _RECONSTRUCT:
        ok = len(args) == 3 and args[0] == _Global("numpy", "ndarray") and args[1] == (0,)
        if not ok or not isinstance(args[2], (bytes, str)):
            raise PickleRefused("_reconstruct is only accepted as (ndarray, (0,), b'b')")
        return _Array()
    if key in _FROMBUFFER:
        if len(args) != 4:
            raise PickleRefused("_frombuffer is only accepted as (buffer, dtype, shape, order)")
        return _Array(_array(*args))
    raise PickleRefused(f"refusing to call {func.module}.{func.name}")


class _Machine:
    """The pickle opcodes needed for plain values and numpy arrays (case 1)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    # ---- reading the opcode arguments
    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise PickleRefused(f"the file ends inside an opcode argument (at byte {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def raw_line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise PickleRefused("the file ends inside a text argument")
        text = self.take(end - self.pos)
        self.pos += 1
        return text

    def line(self) -> str:
        try:
            return self.raw_line().decode("ascii")
        except UnicodeDecodeError:
            raise PickleRefused("a text argument is not ASCII") from None

    def text(self, n: int) -> str:
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise PickleRefused("a string is not valid UTF-8") from None

    # ---- the stack
    def pop(self) -> Any:
        if not self.stack or (self.marks and len(self.stack) == self.marks[-1]):
            raise PickleRefused("an opcode needs a value the stack does not hold")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleRefused("an opcode needs a MARK that was never set")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self, kind: type) -> Any:
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise PickleRefused(f"an opcode needs a {kind.__name__} on the stack")
        return self.stack[-1]

    def memo_get(self, key: int) -> Any:
        if key not in self.memo:
            raise PickleRefused(f"the file refers to memo entry {key}, which was never stored")
        return self.memo[key]

    def run(self) -> Any:
        while True:
            if self.pos >= len(self.data):
                raise PickleRefused("the file ends before the pickle's STOP opcode")
            code = self.data[self.pos]
            self.pos += 1
            if code == 0x2E:  # STOP
                if len(self.stack) != 1 or self.marks:
                    raise PickleRefused("the pickle stops with more than one value")
                return self.stack[0]
            op = _OPS.get(code)
            if op is None:
                raise PickleRefused(f"opcode {bytes([code])!r} at byte {self.pos - 1} is refused")
            op(self)


def _push(value: Callable[[_Machine], Any]) -> Callable[[_Machine], None]:
    return lambda m: m.stack.append(value(m))


def _global(m: _Machine, module: str, name: str) -> None:
    if (module, name) not in _ALLOWED_GLOBALS:
        raise PickleRefused(f"refusing to load {module}.{name}")
    m.stack.append(_Global(module, name))


def _stack_global(m: _Machine) -> None:
    name, module = m.pop(), m.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise PickleRefused("STACK_GLOBAL needs two strings")
    _global(m, module, name)


def _set_items(m: _Machine, items: list[Any]) -> None:
    if len(items) % 2:
        raise PickleRefused("SETITEMS needs key/value pairs")
    target = m.top(dict)
    for key, value in zip(items[::2], items[1::2]):
        if not isinstance(key, (str, bytes, int)):
            raise PickleRefused("a dict key is not a str, bytes or int")
        target[key] = value


def _build(m: _Machine) -> None:
    state = m.pop()
    target = m.stack[-1] if m.stack else None
    if not isinstance(target, (_DType, _Array)):
        raise PickleRefused("BUILD is only accepted for numpy dtypes and arrays")
    target.build(state)


def _reduce_op(m: _Machine) -> None:
    args = m.pop()
    m.stack.append(_reduce(m.pop(), args))


def _put(m: _Machine, key: int) -> None:
    if not m.stack:
        raise PickleRefused("PUT with an empty stack")
    m.memo[key] = m.stack[-1]


def _long(raw: bytes) -> int:
    if len(raw) > 16:
        raise PickleRefused("an integer of more than 16 bytes")
    return int.from_bytes(raw, "little", signed=True)


def _text_int(m: _Machine) -> Any:
    text = m.line()
    if text in ("00", "01"):
        return text == "01"
    try:
        return int(text.rstrip("L"), 10)
    except ValueError:
        raise PickleRefused("an INT opcode without an integer") from None


def _text_key(m: _Machine) -> int:
    try:
        return int(m.line())
    except ValueError:
        raise PickleRefused("a PUT/GET opcode without an integer") from None


def _string(m: _Machine) -> bytes:
    """STRING (protocol 0): a quoted, backslash-escaped Python 2 str."""
    text = m.line().encode("ascii")
    if len(text) < 2 or text[:1] != text[-1:] or text[:1] not in (b"'", b'"'):
        raise PickleRefused("a STRING opcode without quotes")
    try:
        return codecs.escape_decode(text[1:-1])[0]  # type: ignore[attr-defined,no-any-return]
    except ValueError:
        raise PickleRefused("a STRING opcode with a bad escape") from None


def _unicode(m: _Machine) -> str:
    """UNICODE (protocol 0): raw-unicode-escape text up to the newline."""
    try:
        return m.raw_line().decode("raw-unicode-escape")
    except UnicodeDecodeError:
        raise PickleRefused("a UNICODE opcode with a bad escape") from None


def _binstring(m: _Machine) -> bytes:
    n = m.unpack("<i")
    return m.take(n)


def _tuple_n(n: int) -> Callable[[_Machine], None]:
    def op(m: _Machine) -> None:
        items = [m.pop() for _ in range(n)][::-1]
        m.stack.append(tuple(items))

    return op


def _list_items(m: _Machine) -> None:
    items = m.pop_mark()
    m.top(list).extend(items)


def _dict(m: _Machine) -> None:
    items = m.pop_mark()
    m.stack.append({})
    _set_items(m, items)


def _append(m: _Machine) -> None:
    value = m.pop()
    m.top(list).append(value)


def _proto(m: _Machine) -> None:
    if m.take(1)[0] > 5:
        raise PickleRefused("the pickle protocol is above 5")


def _discard(m: _Machine, what: Callable[[], Any]) -> None:
    what()


_OPS: dict[int, Callable[[_Machine], None]] = {
    0x80: _proto,  # PROTO
    0x95: lambda m: _discard(m, lambda: m.take(8)),  # FRAME: a length hint only
    0x28: lambda m: m.marks.append(len(m.stack)),  # MARK
    0x30: lambda m: _discard(m, m.pop),  # POP
    0x31: lambda m: _discard(m, m.pop_mark),  # POP_MARK
    0x7D: _push(lambda m: {}),  # EMPTY_DICT
    0x5D: _push(lambda m: []),  # EMPTY_LIST
    0x29: _push(lambda m: ()),  # EMPTY_TUPLE
    0x74: _push(lambda m: tuple(m.pop_mark())),  # TUPLE
    0x85: _tuple_n(1),
    0x86: _tuple_n(2),
    0x87: _tuple_n(3),
    0x6C: _push(lambda m: list(m.pop_mark())),  # LIST
    0x64: _dict,  # DICT
    0x61: _append,  # APPEND
    0x65: _list_items,  # APPENDS
    0x73: lambda m: _set_items(m, [*reversed([m.pop(), m.pop()])]),  # SETITEM
    0x75: lambda m: _set_items(m, m.pop_mark()),  # SETITEMS
    0x4A: _push(lambda m: m.unpack("<i")),  # BININT
    0x4B: _push(lambda m: m.unpack("<B")),  # BININT1
    0x4D: _push(lambda m: m.unpack("<H")),  # BININT2
    0x49: _push(_text_int),  # INT (protocol 0)
    0x8A: _push(lambda m: _long(m.take(m.unpack("<B")))),  # LONG1
    0x8B: _push(lambda m: _long(m.take(m.unpack("<i")))),  # LONG4
    0x47: _push(lambda m: struct.unpack(">d", m.take(8))[0]),  # BINFLOAT
    0x4E: _push(lambda m: None),  # NONE
    0x88: _push(lambda m: True),  # NEWTRUE
    0x89: _push(lambda m: False),  # NEWFALSE
    0x53: _push(_string),  # STRING (protocol 0)
    0x56: _push(_unicode),  # UNICODE (protocol 0)
    0x54: _push(_binstring),  # BINSTRING (Python 2 str: bytes)
    0x55: _push(lambda m: m.take(m.unpack("<B"))),  # SHORT_BINSTRING
    0x42: _push(lambda m: m.take(m.unpack("<I"))),  # BINBYTES
    0x43: _push(lambda m: m.take(m.unpack("<B"))),  # SHORT_BINBYTES
    0x8E: _push(lambda m: m.take(m.unpack("<Q"))),  # BINBYTES8
    0x96: _push(lambda m: m.take(m.unpack("<Q"))),  # BYTEARRAY8 (kept as bytes)
    0x58: _push(lambda m: m.text(m.unpack("<I"))),  # BINUNICODE
    0x8C: _push(lambda m: m.text(m.unpack("<B"))),  # SHORT_BINUNICODE
    0x8D: _push(lambda m: m.text(m.unpack("<Q"))),  # BINUNICODE8
    0x63: lambda m: _global(m, m.line(), m.line()),  # GLOBAL
    0x93: _stack_global,  # STACK_GLOBAL
    0x52: _reduce_op,  # REDUCE
    0x62: _build,  # BUILD
    0x71: lambda m: _put(m, m.unpack("<B")),  # BINPUT
    0x72: lambda m: _put(m, m.unpack("<I")),  # LONG_BINPUT
    0x70: lambda m: _put(m, _text_key(m)),  # PUT
    0x94: lambda m: _put(m, len(m.memo)),  # MEMOIZE
    0x68: _push(lambda m: m.memo_get(m.unpack("<B"))),  # BINGET
    0x6A: _push(lambda m: m.memo_get(m.unpack("<I"))),  # LONG_BINGET
    0x67: _push(lambda m: m.memo_get(_text_key(m))),  # GET
}


def _plain(value: Any) -> Any:
    """A top-level value: arrays become numpy arrays; a list's items likewise."""
    if isinstance(value, _Array):
        return value.result()
    if isinstance(value, list):
        return [v.result() if isinstance(v, _Array) else v for v in value]
    if isinstance(value, (_DType, _Global)):
        raise PickleRefused("a numpy dtype or a global is stored as a value")
    return value


def load_batch(data: bytes) -> dict[str | bytes | int, Any]:
    """The dict a CIFAR batch pickle holds (see the module cases), arrays as numpy arrays."""
    top = _Machine(data).run()
    if not isinstance(top, dict):
        raise PickleRefused(f"the pickle holds a {type(top).__name__}, not a dict")
    return {k: _plain(v) for k, v in top.items()}
