"""Atomic file output: nothing is lost or half-written, inputs are never touched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A scratch folder beside ``target``; files written there are moved into place by the caller.

    Being on the same file system makes :func:`os.replace` atomic. The folder is removed afterwards.
    """
    parent = Path(target).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnxrecede-", dir=parent) as tmp:
        yield Path(tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_dir(path) as tmp:
        part = tmp / Path(path).name
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_dir(path) as tmp:
        part = tmp / Path(path).name
        part.write_bytes(data)
        os.replace(part, path)
