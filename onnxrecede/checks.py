"""Checks of option values, shared by the Python API and the command line.

One rule per kind of value, so that a value the command line refuses is refused by the library
too (with :class:`~onnxrecede.errors.InputError`), and with the same words:

1. a whole number (``round_to``, batch sizes, sample limits): an ``int`` (or numpy integer),
   never a ``bool`` or a float such as 2.5, and at least ``minimum``;
2. a real number (tolerances, ridge terms, fractions): finite (NaN and infinities would switch
   a check off), and at least ``minimum`` (above it when ``exclusive``);
3. a concrete shape: a non-empty sequence of whole numbers >= 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from onnxrecede.errors import InputError


def whole_number(name: str, value: Any, minimum: int = 1) -> int:
    """Case 1: ``value`` as an ``int``, or :class:`InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def number_problem(value: Any, minimum: float | None = None, exclusive: bool = False) -> str | None:
    """Case 2: what is wrong with ``value`` (no name: the caller says where), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"'{value}' is not a number"
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        return f"{value} is out of range; it must be {bound}"
    return None


def finite_number(
    name: str, value: Any, minimum: float | None = None, exclusive: bool = False
) -> float:
    """Case 2: ``value`` as a ``float``, or :class:`InputError` naming ``name``."""
    problem = number_problem(value, minimum, exclusive)
    if problem is not None:
        raise InputError(f"{name}: {problem}")
    return float(value)


def shape_dims(name: str, dims: Any) -> tuple[int, ...]:
    """Case 3: the concrete shape of input ``name``, or :class:`InputError`."""
    ok = isinstance(dims, Sequence) and not isinstance(dims, str) and len(dims) > 0
    if ok and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and int(d) >= 1 for d in dims
    ):
        return tuple(int(d) for d in dims)
    raise InputError(
        f"bad shape {list(dims) if ok else dims!r} for input '{name}' (--shape, input_shapes): "
        f"every dimension must be a whole number >= 1, e.g. {name}:1x3x224x224"
    )
