"""Symbolic dims: sizes that may hold named unknowns (a dynamic batch ``N``), reasoned about
as products, so that a reshape can be matched without knowing the batch size.

A :class:`Dim` is a monomial ``coeff * sym1 * sym2 ...``. Cases:
1. a known size is ``Dim(n)``; a named symbolic dim (``unk__12``, ``batch``) is a symbol;
2. an anonymous unknown dim gets a symbol of its own (``?name:axis``), equal only to itself;
3. a reshape target resolves ``0`` to the input dim at the same position and ``-1`` to the
   product of the input dims divided by the other entries (symbols cancel); a ``-1`` that
   does not divide evenly is a fresh unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx_ir as ir

#: what a barrier that only an unknown dim causes tells the user to do
SHAPE_HINT = "give the input dims with --shape NAME:DIMS"
_ANONYMOUS = "?"


@dataclass(frozen=True)
class Dim:
    """``coeff`` times the product of ``syms`` (sorted, with repeats)."""

    coeff: int = 1
    syms: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return not self.syms

    def __mul__(self, other: Dim) -> Dim:
        return Dim(self.coeff * other.coeff, tuple(sorted(self.syms + other.syms)))

    def divide(self, other: Dim) -> Dim | None:
        """``self / other`` if it is a monomial, else None."""
        if other.coeff == 0 or self.coeff % other.coeff:
            return None
        left = Counter(self.syms)
        left.subtract(Counter(other.syms))
        if any(n < 0 for n in left.values()):
            return None
        return Dim(self.coeff // other.coeff, tuple(sorted(left.elements())))

    def __str__(self) -> str:
        names = [_ANONYMOUS if s.startswith(_ANONYMOUS) else s for s in self.syms]
        parts = ([str(self.coeff)] if self.coeff != 1 or not names else []) + names
        return "*".join(parts)


def product(dims: Iterable[Dim]) -> Dim:
    out = Dim()
    for d in dims:
        out = out * d
    return out


def value_dims(value: ir.Value | None) -> list[Dim] | None:
    """The dims of ``value`` as stored (a constant's shape first), or None if its rank is unknown."""
    if value is None:
        return None
    shape = value.const_value.shape if value.const_value is not None else value.shape
    if shape is None:
        return None
    out = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int):
            out.append(Dim(dim))
        else:
            name = getattr(dim, "value", None)
            out.append(Dim(1, (str(name) if name else f"{_ANONYMOUS}{value.name}:{axis}",)))
    return out


def resolve_target(din: Sequence[Dim], target: Sequence[int | Dim], allowzero: bool) -> list[Dim]:
    """The output dims of ``Reshape(x of dims din, target)`` (case 3); a target entry computed
    at run time from a dim is given as that :class:`Dim`."""
    out: list[Dim | None] = []
    for i, t in enumerate(target):
        if isinstance(t, Dim):
            out.append(t)
        elif t == 0 and not allowzero:
            out.append(din[i] if i < len(din) else Dim(0))
        elif t == -1:
            out.append(None)
        else:
            out.append(Dim(int(t)))
    if None in out:
        rest = product(d for d in out if d is not None)
        i = out.index(None)
        out[i] = product(din).divide(rest) or Dim(1, (f"{_ANONYMOUS}-1:{i}",))
    return [d for d in out if d is not None]


def substitute(dims: Sequence[Dim], value: int) -> list[Dim]:
    """Every symbol replaced by ``value`` (what binding the unknown dims would give)."""
    return [Dim(d.coeff * value ** len(d.syms)) for d in dims]


def symbols(dims: Iterable[Dim]) -> list[str]:
    """The distinct symbols of ``dims``, in order; anonymous ones as one ``?``."""
    seen: dict[str, None] = {}
    for d in dims:
        for s in d.syms:
            seen.setdefault(_ANONYMOUS if s.startswith(_ANONYMOUS) else s)
    return list(seen)


def describe_symbols(names: Sequence[str]) -> str:
    """``N is symbolic``, ``N and M are symbolic``, ``a dim is unknown``."""
    named = [n for n in names if n != _ANONYMOUS]
    parts = []
    if named:
        verb = "is" if len(named) == 1 else "are"
        parts.append(f"{' and '.join(named)} {verb} symbolic")
    if _ANONYMOUS in names:
        parts.append("a dim is unknown")
    return " and ".join(parts) or "a dim is unknown"


def show(dims: Sequence[Dim] | Sequence[int | Dim]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def shape_hint(graph: ir.Graph | None) -> str:
    """:data:`SHAPE_HINT`, followed by the graph inputs that have dynamic dims."""
    dynamic = []
    for value in graph.inputs if graph is not None else []:
        dims = value_dims(value)
        if dims is not None and not all(d.known for d in dims):
            dynamic.append(f"{value.name} {show(dims)}")
    return SHAPE_HINT + (f" (dynamic inputs: {', '.join(dynamic)})" if dynamic else "")
