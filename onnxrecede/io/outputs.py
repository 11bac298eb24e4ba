"""Atomic file output: nothing is lost or half-written, inputs are never touched.

Every file is first written into a scratch folder beside its target (same file system, so
:func:`os.replace` is atomic) and moved into place only when complete. :class:`Outputs` does the
same for several files together: a command stages all of them, and they are moved into place
at the end, with SIGINT/SIGTERM held back during the moves, so an interrupted command leaves
either every output or none, and no temporary file.

An ``OSError`` while writing names the user's path, not the scratch folder
(:class:`OutputError`, exit code 2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from onnxrecede.errors import InputError

SCRATCH_PREFIX = ".onnxrecede-"
T = TypeVar("T")


class OutputError(InputError):
    """An output cannot be written (a missing or read-only folder, a full disk, ...)."""

    def __init__(self, message: str, cause: OSError) -> None:
        super().__init__(message)
        self.cause = cause


def output_error(path: str | os.PathLike[str], err: OSError) -> OutputError:
    reason = err.strerror or str(err)
    return OutputError(f"cannot write {os.fspath(path)}: {reason}; choose a writable path", err)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A scratch folder beside ``target`` (whose folder is created if missing); files written
    there are moved into place by the caller.

    Being on the same file system makes :func:`os.replace` atomic. The folder is removed
    afterwards, also when the caller fails or is interrupted.
    """
    try:
        Path(target).resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(target, e) from None
    with scratch_dir(Path(target).resolve()) as tmp:
        yield tmp


def existing_folder(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; returns those created, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for f in reversed(missing):
        try:
            f.mkdir()
        except OSError as e:
            remove_folders(created)
            raise output_error(f, e) from None
        created.append(f)
    return created


def remove_folders(created: list[Path]) -> None:
    """Remove the (empty) folders :func:`make_folders` created, innermost first."""
    for f in reversed(created):
        with contextlib.suppress(OSError):
            f.rmdir()


@contextlib.contextmanager
def scratch_dir(target: Path) -> Iterator[Path]:
    """A scratch folder in the folder of ``target``, or in its nearest existing ancestor (no
    folder is created for a target that may never be written); removed afterwards."""
    try:
        tmp = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=existing_folder(target.parent))
    except OSError as e:
        raise output_error(target, e) from None
    try:
        yield Path(tmp)
    except OSError as e:
        if e.filename is not None and str(e.filename).startswith(tmp):
            raise output_error(target, e) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with Outputs() as outputs:
        outputs.write(path, lambda staged: staged.write_bytes(data))
        outputs.commit()


def replace_into(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as e:
        raise output_error(dst, e) from None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit), so a short critical step completes."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # not the main thread, or no pthreads
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Outputs:
    """Stage several output files and move them into place together.

    ``staged(path)`` gives the path to write instead of ``path``: a file of the same name in a
    scratch folder beside ``path`` (so an external-data reference written into a model stays
    right; in the nearest existing ancestor when ``path``'s folder does not exist yet).
    ``commit()`` creates missing folders and moves every staged file into place; leaving the
    ``with`` block without committing (an error, an interrupt) removes the scratch folders and
    leaves the targets untouched, with no folder created. A symbolic link at ``path`` is
    replaced, never written through.
    """

    def __init__(self) -> None:
        self._dirs: dict[Path, Path] = {}
        self._stack = contextlib.ExitStack()
        self._pending: list[tuple[Path, Path]] = []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def staged(self, path: str | os.PathLike[str]) -> Path:
        target = Path(os.fspath(path)).absolute()
        parent = target.parent
        if parent not in self._dirs:
            self._dirs[parent] = self._stack.enter_context(scratch_dir(target))
        staged = self._dirs[parent] / target.name
        if (staged, target) not in self._pending:
            self._pending.append((staged, target))
        return staged

    def write(self, path: str | os.PathLike[str], writer: Callable[[Path], T]) -> T:
        """``writer(staged path)``; a failure to write names ``path``, not the scratch folder."""
        try:
            return writer(self.staged(path))
        except OutputError as e:
            raise output_error(path, e.cause) from None
        except OSError as e:
            raise output_error(path, e) from None

    def write_text(self, path: str | os.PathLike[str], text: str) -> None:
        self.write(path, lambda staged: staged.write_text(text, encoding="utf-8"))

    def commit(self) -> list[Path]:
        """Move every staged file that exists into place; returns the targets written."""
        done: list[Path] = []
        created: list[Path] = []
        with signals_held():
            try:
                for staged, target in self._pending:
                    if staged.exists():
                        created.extend(make_folders(target.parent))
                        replace_into(staged, target)
                        done.append(target)
            except BaseException:
                remove_folders(created)
                raise
        self._pending.clear()
        return done
