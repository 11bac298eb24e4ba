"""The CI gate: fail when the measured speedup is under a bar."""

from __future__ import annotations

from onnxrecede.bench.result import BenchResult
from onnxrecede.errors import EXIT_TOO_SLOW, InputError, OnnxRecedeError


class SpeedupBelowBarError(OnnxRecedeError):
    """The measured speedup is under ``--fail-below``."""

    exit_code = EXIT_TOO_SLOW


def check_speedup(result: BenchResult, fail_below: float | None) -> None:
    """Raise :class:`SpeedupBelowBarError` when the primary speedup is under ``fail_below``."""
    if fail_below is None:
        return
    speedup = result.speedup
    if speedup is None:
        raise InputError("--fail-below needs two models: a reference and a candidate")
    if speedup < fail_below:
        primary = result.configurations[0]
        raise SpeedupBelowBarError(
            f"speedup {speedup:.3f}x on {primary.provider} batch {primary.batch} is below "
            f"--fail-below {fail_below:g}"
        )
