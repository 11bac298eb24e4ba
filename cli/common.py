"""Shared command-line plumbing: error mapping, logging, JSON output, progress bars.

Results go to stdout; logs, progress bars and errors go to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from onnxrecede.errors import OnnxRecedeError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code for a bug in onnxrecede itself (an unexpected exception).
EXIT_INTERNAL = 70


def handle_errors(fn: F) -> F:
    """Turn user-caused errors into one line on stderr and a non-zero exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OnnxRecedeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except Exception as e:
            if os.environ.get("ONNXRECEDE_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(e).__name__}: {e}\n"
                "This is a bug in onnxrecede. Rerun with ONNXRECEDE_DEBUG=1 for the traceback "
                "and report it.",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    if verbose == 0 and not quiet:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    for noisy in ("onnx_ir", "onnxscript", "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def echo_json(obj: Any) -> None:
    """Print a JSON document to stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextmanager
def progress_callback(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback drawing one bar per stage on stderr."""
    state: dict[str, Any] = {"stage": None, "bar": None, "done": 0}
    show = enabled and sys.stderr.isatty()

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
            state["bar"] = None

    def callback(stage: str, done: int, total: int) -> None:
        if not show:
            return
        if stage != state["stage"]:
            close()
            state["stage"] = stage
            state["done"] = 0
            state["bar"] = click.progressbar(length=max(total, 1), label=stage, file=sys.stderr)
            state["bar"].__enter__()
        state["bar"].update(done - state["done"])
        state["done"] = done

    try:
        yield callback
    finally:
        close()
