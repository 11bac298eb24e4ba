"""Shared command-line plumbing: error mapping, logging, JSON output, progress bars.

Results go to stdout; logs, progress bars and errors go to stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from onnxrecede.errors import OnnxRecedeError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit code for a bug in onnxrecede itself (an unexpected exception).
EXIT_INTERNAL = 70
#: Exit codes of an interrupted command (128 + signal number, as shells report them).
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt so every ``finally`` cleans up."""


#: set when SIGTERM arrives during a command: a library that catches the exception we raise
#: (the dynamo exporter wraps what interrupts it) cannot turn the signal into another exit code
_signalled: dict[str, bool] = {"SIGTERM": False}


def _raise_terminated(signum: int, frame: Any) -> None:
    _signalled["SIGTERM"] = True
    raise Terminated()


def _exit_if_terminated() -> None:
    if _signalled["SIGTERM"]:
        click.echo("error: terminated (SIGTERM); unfinished outputs were discarded", err=True)
        sys.exit(EXIT_SIGTERM)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def handle_errors(fn: F) -> F:
    """Turn user-caused errors into one line on stderr and a non-zero exit code, no traceback.

    SIGTERM is turned into an exception for the duration of the command, so that scratch files
    are removed on the way out (exit 143; SIGINT exits 130). ``OSError`` on a user's path is a
    user error (exit 2), not a bug.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:  # not the main thread
            previous = None
        _signalled["SIGTERM"] = False
        try:
            return fn(*args, **kwargs)
        except OnnxRecedeError as e:
            _exit_if_terminated()
            click.echo(f"error: {_one_line(str(e))}", err=True)
            sys.exit(e.exit_code)
        except Terminated:
            _exit_if_terminated()
            raise  # pragma: no cover - the flag is always set with Terminated
        except KeyboardInterrupt:
            click.echo("error: interrupted; unfinished outputs were discarded", err=True)
            sys.exit(EXIT_SIGINT)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            click.echo(f"error: cannot access{where}: {e.strerror or e}", err=True)
            sys.exit(2)
        except Exception as e:
            _exit_if_terminated()
            if os.environ.get("ONNXRECEDE_DEBUG"):
                raise
            click.echo(
                f"internal error: {type(e).__name__}: {e}\n"
                "This is a bug in onnxrecede. Rerun with ONNXRECEDE_DEBUG=1 for the traceback "
                "and report it.",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


class FiniteFloat(click.ParamType):
    """A float option that no value can switch off: NaN and infinities are refused, and so is
    anything below ``minimum`` (or equal to it when ``exclusive``)."""

    name = "number"

    def __init__(self, minimum: float | None = None, exclusive: bool = False) -> None:
        self.minimum = minimum
        self.exclusive = exclusive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from onnxrecede.checks import number_problem

        try:
            number = value if isinstance(value, float) else float(value)
        except (TypeError, ValueError):
            number = value
        problem = number_problem(number, self.minimum, self.exclusive)
        if problem is not None:
            self.fail(problem, param, ctx)
        return number


#: tolerances, accuracy drops, ridge terms: finite and >= 0
NON_NEGATIVE = FiniteFloat(minimum=0.0)
TOLERANCE = NON_NEGATIVE
#: speedup bars, fractions of a budget: finite and > 0
POSITIVE = FiniteFloat(minimum=0.0, exclusive=True)
#: any finite number
FINITE = FiniteFloat()


def guard_paths(
    reads: list[tuple[str, str | os.PathLike[str] | None]],
    writes: list[tuple[str, str | os.PathLike[str] | None]],
) -> None:
    """Before any work: refuse writes that would touch a read or another write (exit 2)."""
    from onnxrecede.io.paths import check_paths

    check_paths(
        [(r, p) for r, p in reads if p is not None and p != "-"],
        [(r, p) for r, p in writes if p is not None and p != "-"],
    )


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


# Option groups shared by several commands (one definition, one help text) ----------------------

#: ``-q/--quiet``: logging at WARNING, no progress bars
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")

#: ``--shape NAME:DIMS`` (repeatable), parsed with :func:`onnxrecede.runtime.parse_shape_specs`
shape_option = click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME:1x3x224x224",
    help="Concrete shape of a model input with dynamic dims (repeatable); only dynamic dims "
    "may differ from the model's.",
)


#: ``--threads N``: ONNX Runtime intra-op threads
threads_option = click.option(
    "--threads",
    type=int,
    default=None,
    help="ORT intra-op threads (default: ORT's choice, one per physical core).",
)


def json_flag(what: str) -> Callable[[F], F]:
    """``--json``: print ``what`` as JSON on stdout instead of the table."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout.")


def tolerance_options(against: str) -> Callable[[F], F]:
    """``--atol``/``--rtol`` (finite, >= 0) with the tolerance rule in their help."""

    def deco(f: F) -> F:
        f = click.option(
            "--rtol", type=TOLERANCE, default=1e-5, show_default=True,
            help="Relative tolerance, times the largest |value| of each output.",
        )(f)  # fmt: skip
        return click.option(
            "--atol", type=TOLERANCE, default=1e-5, show_default=True,
            help=f"Absolute tolerance {against}: an element fails iff |diff| > atol + rtol * "
            "max |reference| of its output.",
        )(f)  # fmt: skip

    return deco
