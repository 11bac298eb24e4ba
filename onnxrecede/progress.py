"""The progress callback long stages take: ``progress(stage, done, total)``.

Every stage that loops (analysis, rewrite, verification, calibration, evaluation, timing, the
speedup search) calls it with its name, the items done and the total; the command line draws a
bar from it, a library user may pass any callable (or None).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]

__all__ = ["Progress"]
